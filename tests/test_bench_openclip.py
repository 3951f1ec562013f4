"benchmarks/bench_openclip.py: our trainer against open_clip_train.main on the same CVCL model and pairs, one table."
import os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_openclip_smoke():
    env = dict(os.environ, BABYVLM_THREADS='1', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    r = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'bench_openclip.py'), '--smoke'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    lines = out.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith('trainer'))
    assert {'steps timed', 'samples/s', 'ours/open_clip'} <= set(re.split(r'\s{2,}', lines[head].strip()))
    assert set(lines[head + 1].replace(' ', '')) == {'-'}
    rows = {}
    for l in lines[head + 2:head + 4]:
        c = re.split(r'\s{2,}', l.strip())
        rows[c[0].split(':')[0]] = c
    assert set(rows) == {'ours', 'open_clip'}, lines[head:head + 4]
    sps = {k: float(c[2]) for k, c in rows.items()}
    assert all(v > 0 for v in sps.values()), sps
    for c in rows.values(): assert c[1].startswith('3 (steps 3-5 of 6)'), c   # smoke: 6 steps, the first 2 and the last not timed
    ratio = float(re.search(r'ratio ours/open_clip = ([0-9.]+)', out).group(1))
    assert ratio > 0 and abs(ratio - sps['ours'] / sps['open_clip']) < 0.02 * ratio + 0.01
    assert float(rows['ours'][3]) == round(ratio, 2) and rows['open_clip'][3] == '1.00'
    assert 'same initial weights: yes' in out   # the patched factory built the very model our trainer trained
