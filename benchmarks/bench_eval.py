#!/usr/bin/env python
"""Evaluation throughput per benchmark of a run folder of any family (through the registry), or of an untrained
contrastive model (and, with --reference, the upper-bound reference).

For every benchmark of the profile's embedded world: items/s and image-text pairs/s of the family's batched scorer on
all items, then the same scorer with batch size 1 on the first --single items (how a one-request-at-a-time
harness scores), the ratio, and whether the scores agree. The captioning row times the family's captioner
(retrieval over the home training utterances for the contrastive families, greedy decoding for the generative ones)
plus METEOR.

usage: .venv/bin/python benchmarks/bench_eval.py [--profile quick] [--run outputs/quick/home/0] [--single 100] [--reference]
Without --run an untrained model of the profile's contrastive section is timed (throughput does not depend on the weights).
Timings on shared machines vary several-fold between runs; compare rows of one run, not runs.
"""
import argparse, os, time
from dataclasses import replace
from pathlib import Path
import numpy as np
from _table import print_table


def _pairs(name, items):
    if name in ('labeled_s', 'real_photos'): return sum(len(t.images) for t in items)
    if name == 'vtwt': return 2 * len(items)
    if name == 'baby_winoground': return 4 * len(items)
    return len(items)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='quick', help='profile whose world and model are timed')
    ap.add_argument('--run', default='', help='a trained run folder of any family (model_config.json names it; default: untrained contrastive model)')
    ap.add_argument('--single', type=int, default=100, help='items scored one at a time (batch size 1) per benchmark')
    ap.add_argument('--reference', action='store_true', help='also time the reference model (224 px, frozen encoders)')
    a = ap.parse_args()
    from babyvlm.core import set_offline, seed_everything
    from babyvlm.study import load_params, run_training_data
    from babyvlm.world import build_world
    from babyvlm.items import build_benchmarks
    from babyvlm.text import build_vocab
    from babyvlm.models.contrastive import create_contrastive
    from babyvlm.families import Loaded, get_family, detect_family
    from babyvlm.evaluate import evaluate_items, BENCHMARKS
    set_offline(); seed_everything(0)
    p = load_params(a.profile, 'home')
    cfg = replace(p.eval, n_boot=200)
    world = build_world(p.world, progress=False)
    bench = build_benchmarks(world, progress=False)
    benchmarks = {n: bench[n] for n in bench.names}
    candidates = world.home['train']['text']
    if a.run:
        fam = detect_family(a.run); loaded = fam.load(a.run)
        label = f'{fam.name} ({Path(a.run).name})'
    else:
        fam = get_family('contrastive')
        train_ds, _ = run_training_data(world, p.data, 0)
        vocab = build_vocab(train_ds['text'])
        loaded = Loaded('contrastive', create_contrastive(p.contrastive.model, vocab), vocab, Path('.'))
        label = f'contrastive {p.contrastive.model.arch}'
    models = [(label, fam, loaded)]
    if a.reference:
        from babyvlm.models.reference import ReferenceConfig, create_reference
        models.append(('reference (LiT, 224 px)', get_family('reference'),
                       Loaded('reference', create_reference(ReferenceConfig()), None, Path('.'))))
    rows = []
    for label, fam, loaded in models:
        scorer = fam.scorer(loaded, cfg.batch_size)
        for name, items in benchmarks.items():
            gen = fam.captioner(loaded, cfg.batch_size, candidates) if name == 'saycam_caption' else None
            t0 = time.perf_counter(); m, preds = evaluate_items(scorer, {name: items}, cfg, generate_fn=gen); dt = time.perf_counter() - t0
            row = [label, name, f'{len(items)}', f'{len(items) / dt:.0f} items/s', f'{_pairs(name, items) / dt:.0f} pairs/s']
            if name == 'saycam_caption': row += ['-', '-', '-']
            else:
                k = min(a.single, len(items)); one = fam.scorer(loaded, 1)
                t0 = time.perf_counter(); m1, p1 = BENCHMARKS[name](one, items[:k], cfg); d1 = time.perf_counter() - t0
                key = {'labeled_s': 'scores', 'real_photos': 'scores', 'vtwt': ('score_positive', 'score_negative'),
                       'baby_winoground': 'scores'}[name]
                get = (lambda q: [q[x] for x in key]) if isinstance(key, tuple) else (lambda q: q[key])
                same = np.allclose(np.array([get(q) for q in preds[name][:k]], float), np.array([get(q) for q in p1], float), atol=1e-5)
                row += [f'{k / d1:.1f} items/s', f'{(len(items) / dt) / (k / d1):.1f}x', 'yes' if same else 'NO']
            rows.append(row)
    head = ['model', 'benchmark', 'items', 'batched', 'pairs', 'batch size 1', 'speed-up', 'same scores (1e-5)']
    print_table(head, rows)
    print(f"\nprofile {a.profile}, world {world.root.name[:12]}; batch size {cfg.batch_size}; torch threads "
          f"{os.environ.get('BABYVLM_THREADS', 2)}; captioning: " + '; '.join(
              f"{label}: " + (f"retrieval over {len(set(candidates))} home utterances" if fam.caption_kind == 'retrieved'
                              else 'greedy decoding') for label, fam, _ in models) + ' + METEOR')


if __name__ == '__main__':
    main()
