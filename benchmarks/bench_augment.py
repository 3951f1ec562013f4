#!/usr/bin/env python
"""Time the training augmentation per batch: one image at a time (`babyvlm.train.augment_each`, the definition) against
the batched path (`augment_batch`: per-image crop and flip, then colour jitter, grey and blur on the whole batch with
one draw per image), side by side in one run, and check that both give the same bytes.

  pipelines   the paper's (CVCL, CoCa: crop, flip, blur) and SimCLR's (the BabyLLaVA world encoders: + colour jitter
              and grey), at the quick profile's encoder side (32 px) and the default world's (64 px)
  images      a batch of uint8 images (half noise, half smooth) at the world's 64 px
  output      ms per batch for each path, their ratio, and the largest byte difference (0: the same augmentation)

usage: BABYVLM_THREADS=1 .venv/bin/python benchmarks/bench_augment.py [--batch 64] [--repeats 5]
(one thread: as each study run trains, two at a time on two cores). Timings vary several-fold on shared machines.
"""
import argparse, os, time
import torch
from _table import print_table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--batch', type=int, default=64); ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=int(os.environ.get('BABYVLM_THREADS', 1)))
    a = ap.parse_args(argv)
    from babyvlm.train import ImageConfig, make_augment, augment_each, augment_batch
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    ims = torch.randint(0, 256, (a.batch, 3, 64, 64), dtype=torch.uint8, generator=g)
    h = a.batch // 2
    ims[h:] = torch.nn.functional.interpolate(ims[h:, :, ::8, ::8].float(), size=(64, 64), mode='bilinear').round().to(torch.uint8)
    rows = []
    for name, cfg in (('paper (CVCL, CoCa)', ImageConfig()), ('SimCLR (world encoders)', ImageConfig(jitter_p=0.8, grey_p=0.2))):
        for size in (32, 64):
            aug = make_augment(size, cfg)
            times, diff = {}, 0
            for r in range(a.repeats + 1):   # the first round warms up and is not timed
                seeds = list(range(r * a.batch, (r + 1) * a.batch))
                for path, fn in (('each', augment_each), ('batch', augment_batch)):
                    t = time.perf_counter(); out = fn(ims, aug, seeds); dt = time.perf_counter() - t
                    if r: times.setdefault(path, []).append(dt)
                    if path == 'each': ref = out
                    else: diff = max(diff, int((out.int() - ref.int()).abs().max()))
            te, tb = (sorted(times[p])[len(times[p]) // 2] * 1000 for p in ('each', 'batch'))   # medians
            rows.append([name, size, f'{te:.0f}', f'{tb:.0f}', f'{te / tb:.1f}x', diff])
    print(f"augmentation of a batch of {a.batch} images, {a.threads} thread(s), median of {a.repeats}")
    print_table(['pipeline', 'side (px)', 'per image (ms)', 'batched (ms)', 'speed-up', 'max byte difference'], rows)
    return rows


if __name__ == '__main__':
    main()
