#!/usr/bin/env python
"""Throughput of the `openai` rewriting backend (babyvlm.transfer.OpenAIBackend) against the local fake endpoint
(babyvlm.testing.FakeChatServer) with simulated latency, compared with what the concurrency limit allows
(max_concurrency / latency requests per second): the ratio shows the client's overhead and whether the bound holds.
The endpoint runs in a child process, as a real server does, so its threads do not compete with the client's for
the GIL.

usage: .venv/bin/python benchmarks/bench_openai.py [--n 200] [--latency 0.05] [--concurrency 1 4 16] [--fault-share 0.1]
Everything is local (127.0.0.1); no API key leaves the process. Timings vary on shared machines: compare rows of one run.
"""
import argparse, contextlib, multiprocessing as mp, os, random, tempfile, time
from pathlib import Path


def _serve(conn, latency, share):
    "The fake endpoint in its own process, as a real server is (its threads then do not share the client's GIL)."
    from babyvlm.testing import FakeChatServer
    rng = random.Random(0)
    faults = (lambda i, b: '429' if rng.random() < share else None) if share else None
    with FakeChatServer(latency=latency, faults=faults) as srv:
        conn.send(srv.base_url); conn.recv()   # serve until the client is done
        conn.send(srv.max_in_flight)


@contextlib.contextmanager
def endpoint(latency, share):
    "Start `_serve` in a child process; yields a dict with 'base_url', and 'max_in_flight' once the block ends."
    ctx = mp.get_context('spawn'); here, there = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(there, latency, share), daemon=True); proc.start()
    info = dict(base_url=here.recv())
    try: yield info
    finally:
        here.send('stop'); info['max_in_flight'] = here.recv(); proc.join(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=200, help='distinct captions per run')
    ap.add_argument('--latency', type=float, default=0.05, help='seconds the fake endpoint takes per reply')
    ap.add_argument('--concurrency', type=int, nargs='+', default=[1, 4, 16])
    ap.add_argument('--fault-share', type=float, default=0.1, help='share of requests answered 429 in the second series')
    a = ap.parse_args()
    from babyvlm.transfer import OpenAIBackend
    os.environ['BABYVLM_BENCH_KEY'] = 'sk-bench-local'
    caps = [f"a studio shot of a red ball number {i}" for i in range(a.n)]
    print(f"{a.n} captions, endpoint latency {a.latency*1000:.0f} ms")
    print(f"{'faults':>8} {'conc':>5} {'seconds':>8} {'req/s':>8} {'bound':>8} {'ratio':>6} {'max in flight':>14} {'retries':>8}")
    for share in (0.0, a.fault_share):
        for c in a.concurrency:
            with tempfile.TemporaryDirectory() as d, endpoint(a.latency, share) as srv:
                be = OpenAIBackend('fake', srv['base_url'], api_key_env='BABYVLM_BENCH_KEY', max_concurrency=c, base_delay=a.latency,
                                   max_retries=8, cache_file=Path(d)/'c.jsonl')
                t = time.perf_counter(); out, rep = be.rewrite_many(caps); dt = time.perf_counter() - t
                assert rep['n_failed'] == 0 and all(out)
            bound = c/a.latency
            print(f"{share:>8.0%} {c:>5} {dt:>8.2f} {a.n/dt:>8.1f} {bound:>8.1f} {a.n/dt/bound:>6.2f} {srv['max_in_flight']:>14} "
                  f"{rep['errors'].get('retries', 0):>8}")


if __name__ == '__main__': main()
