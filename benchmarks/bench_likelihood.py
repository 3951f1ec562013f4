#!/usr/bin/env python
"""Batched likelihood scoring vs one request at a time, for the generative family (BabyLLaVA).

The paper's harness (babylmms-eval) scores one (image, text) request at a time. `GenerativeScorer` scores
padded batches with attention masks. On the same model and the same items (VTWT and Labeled-S of the
profile's world) this prints items/s for both, their ratio, and the largest score difference (must be < 1e-5).

usage: .venv/bin/python benchmarks/bench_likelihood.py [--profile quick] [--run outputs/quick/home-generative/0] [--n 200]
Without --run an untrained BabyLLaVA of the profile's generative section is timed (its SimCLR CNN's architecture with
random weights; speed does not depend on the weights).
Timings on shared machines vary several-fold between runs; compare rows of one run, not runs.
"""
import argparse, os, time
import numpy as np
from _table import print_table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='quick')
    ap.add_argument('--run', default='', help="a run folder of the generative family (default: untrained model)")
    ap.add_argument('--n', type=int, default=200, help='items per benchmark')
    ap.add_argument('--batch', type=int, default=64, help='batch size of the batched scorer')
    a = ap.parse_args()
    from babyvlm.core import set_offline, seed_everything
    from babyvlm.study import load_params, run_training_data
    from babyvlm.world import build_world
    from babyvlm.items import build_benchmarks
    from babyvlm.text import build_tokenizer
    from babyvlm.evaluate import evaluate_vtwt, evaluate_labeled_s, GenerativeScorer
    from babyvlm.families import detect_family
    from babyvlm.models.generative import create_generative
    from babyvlm.models.vision import vision_from_spec, ssl_spec
    set_offline(); seed_everything(0)
    p = load_params(a.profile, 'home', 0, ['family=generative'])
    world = build_world(p.world, progress=False)
    bench = build_benchmarks(world, progress=False)
    if a.run:
        fam = detect_family(a.run)
        if fam.name != 'generative': raise SystemExit(f"{a.run}: a {fam.name} run; this benchmark times the generative family's scorer")
        loaded = fam.load(a.run); model, tok = loaded.model, loaded.tokenizer
    else:
        train_ds, _ = run_training_data(world, p.data, 0)
        tok = build_tokenizer(train_ds['text'])
        model = create_generative(p.generative.model, vision_from_spec(ssl_spec(p.generative.ssl)), tok).eval()
    cfg = p.eval.__class__(**{**p.eval.__dict__, 'n_boot': 100})
    rows = []
    for name, items, fn, pairs in [('vtwt', bench['vtwt'][:a.n], evaluate_vtwt, 2),
                                   ('labeled_s', bench['labeled_s'][:a.n], evaluate_labeled_s, 4)]:
        res = {}
        for label, bs in (('batched', a.batch), ('one at a time', 1)):
            sc = GenerativeScorer(model, tok, batch_size=bs)
            t0 = time.perf_counter(); m, preds = fn(sc, items, cfg); dt = time.perf_counter() - t0
            key = ('score_positive', 'score_negative') if name == 'vtwt' else ('scores',)
            s = np.array([[q[k] for k in key] for q in preds], dtype=float).reshape(len(preds), -1)
            res[label] = (len(items) / dt, s, m['accuracy'])
        diff = float(np.abs(res['batched'][1] - res['one at a time'][1]).max())
        rows.append([name, str(len(items)), f"{res['batched'][0]:.1f}", f"{res['one at a time'][0]:.1f}",
                     f"{res['batched'][0] / res['one at a time'][0]:.1f}x", f"{diff:.1e}",
                     f"{res['batched'][2]:.3f} / {res['one at a time'][2]:.3f}"])
    head = ['benchmark', 'items', f'batched ({a.batch}) items/s', 'one at a time items/s', 'ratio', 'max |score diff|', 'accuracy (both)']
    print_table(head, rows)
    print(f"\nprofile {a.profile}; model {'from ' + a.run if a.run else 'untrained, profile sizes'}; "
          f"torch threads {os.environ.get('BABYVLM_THREADS', 2)}")


if __name__ == '__main__':
    main()
