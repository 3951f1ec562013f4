#!/usr/bin/env python
"""Time the stages of the embedded study on this machine and print a table.

  world building     images composed per second (home + web images, fresh cache, assets reused)
  default world      wall time of the default profile's world + benchmarks from scratch (issue 13: at most 2 minutes on 2 cores)
  benchmark building images rendered per second (Labeled-S, VTWT, Baby Winoground edits, captioning, real photos)
  training           optimizer steps/s and samples/s of the profile's contrastive family through the registry (evaluation excluded)
  evaluation         Labeled-S trials/s and image-text pairs/s with the contrastive scorer
  input pipeline     images/s of decoding (PNG -> uint8 tensor) and of the paper's augmentation + normalisation alone,
                     against the training step's samples/s: the ratio says whether the input keeps up
  study memory       with --study PROFILE: `babyvlm study --profile PROFILE` run whole in a fresh outputs folder, its
                     peak resident memory, the study process and its papermill kernels together (the process tree
                     sampled every 0.5 s with psutil: the sum of RSS, which counts shared pages once per process, and
                     the sum of PSS, which splits them), and its wall time (issue 17: at most 6 GiB for the default study)

usage: .venv/bin/python benchmarks/bench_study.py [--profile quick] [--steps 60] [--home 2000] [--no-default-world]
                                                  [--study default [--study-set KEY=VALUE ...] [--study-only] [--study-out DIR] [--study-no-report]]
Timings on shared machines vary several-fold between runs; compare rows of one run, not runs.
"""
import argparse, contextlib, os, subprocess, sys, tempfile, time
from dataclasses import replace
from pathlib import Path


def peak_memory(cmd:list, interval:float=0.5, **popen_kw) -> dict:
    """Run `cmd` to its end, sampling the resident memory of its whole process tree (it and every descendant, e.g. a
    study and its kernels) every `interval` s; returns returncode, seconds, peak_rss and peak_pss (bytes, sums over
    the tree at the sampled moment when each was largest) and peak_processes."""
    import psutil
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen_kw)
    root, peak = psutil.Process(proc.pid), dict(peak_rss=0, peak_pss=0, peak_processes=0)
    while proc.poll() is None:
        try: procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess: break
        rss = pss = 0
        for q in procs:
            try:
                m = q.memory_full_info(); rss += m.rss; pss += getattr(m, 'pss', m.rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess): pass
        peak = dict(peak_rss=max(peak['peak_rss'], rss), peak_pss=max(peak['peak_pss'], pss),
                    peak_processes=max(peak['peak_processes'], len(procs)))
        time.sleep(interval)
    proc.wait()
    return dict(returncode=proc.returncode, seconds=time.perf_counter() - t0, **peak)


def study_memory(profile:str, sets:list, out:Path, report:bool=True) -> tuple:
    "The table row of `babyvlm study --profile PROFILE` run whole into `out` (with its report unless `report` is false), with its peak memory."
    cmd = [sys.executable, '-m', 'babyvlm.cli', 'study', '--profile', profile, '--out', str(out)] + sum([['--set', x] for x in sets], [])
    if not report: cmd.append('--no-report')
    r = peak_memory(cmd, stdout=subprocess.DEVNULL)
    if r['returncode'] != 0: print(f"(the study exited {r['returncode']}: its runs are in {out})", file=sys.stderr)
    gib = 2 ** 30
    return ('study memory', f"babyvlm study --profile {profile}" + ''.join(f' --set {x}' for x in sets) + ('' if report else ' --no-report') +
            f" ({r['peak_processes']} processes at most)",
            f"peak RSS {r['peak_rss'] / gib:.2f} GiB, PSS {r['peak_pss'] / gib:.2f} GiB (study + kernels)",
            f"{r['seconds']:.0f} s" + ('' if r['returncode'] == 0 else f" (exit {r['returncode']})"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='quick', help='profile whose world and contrastive (model/train/images) sections are timed')
    ap.add_argument('--steps', type=int, default=60, help='training steps to time')
    ap.add_argument('--home', type=int, default=2000, help='home training pairs in the timed world build')
    ap.add_argument('--no-default-world', action='store_true', help="skip timing the default profile's world (about 40 s)")
    ap.add_argument('--study', metavar='PROFILE', default='', help='also run this whole study (e.g. default) and report its peak memory')
    ap.add_argument('--study-set', metavar='KEY=VALUE', action='append', default=[], help='an override for that study (repeatable)')
    ap.add_argument('--study-only', action='store_true', help='time only the study (with --study)')
    ap.add_argument('--study-out', metavar='DIR', default='', help="keep that study's outputs in DIR (default: a temporary folder, removed)")
    ap.add_argument('--study-no-report', action='store_true', help='run that study without its report (`babyvlm study --no-report`)')
    a = ap.parse_args(argv)
    if a.study_only and not a.study: ap.error('--study-only needs --study PROFILE')
    if (a.study_out or a.study_no_report) and not a.study: ap.error('--study-out and --study-no-report need --study PROFILE')
    from babyvlm.core import set_offline, seed_everything, cache_dir
    from babyvlm.study import load_params, run_training_data
    from babyvlm.assets import fetch_assets
    from babyvlm.world import build_world
    from babyvlm.items import build_benchmarks
    from babyvlm.families import get_family
    from babyvlm.train import pair_tensors, make_augment, augment_batch, normalize, sample_seeds
    from babyvlm.evaluate import evaluate_labeled_s
    set_offline(); seed_everything(0)
    p = load_params(a.profile, 'home')
    fetch_assets(progress=False)
    rows = []
    if not a.study_only:
        with tempfile.TemporaryDirectory() as d:
            tmp_cache = Path(d)
            (tmp_cache/'assets').symlink_to(cache_dir()/'assets')   # reuse the fetched packs, build the world afresh
            wc = replace(p.world, n_home_train=a.home, n_home_val=a.home // 10, n_web=a.home // 4, n_web_val=a.home // 20)
            t0 = time.perf_counter(); world = build_world(wc, cache=tmp_cache, progress=False); dt = time.perf_counter() - t0
            n_img = sum(world.manifest['counts'][k] for k in ('home_train', 'home_validation', 'web_train', 'web_validation'))
            rows.append(('world building', f'{n_img} images, {wc.image_size} px', f'{n_img / dt:.0f} images/s', f'{dt:.1f} s'))
            t0 = time.perf_counter(); bench = build_benchmarks(world, progress=False); dt = time.perf_counter() - t0
            c = bench.manifest['counts']
            n_img = 4 * (c['labeled_s_trials'] + c['real_photo_trials']) + c['vtwt_items'] + c['baby_winoground_instances'] + c['caption_images']
            rows.append(('benchmark building', f'{n_img} images, {wc.image_size} px', f'{n_img / dt:.0f} images/s', f'{dt:.1f} s'))
            if not a.no_default_world:
                dw = load_params('default', 'home').world; dcache = tmp_cache/'default'; dcache.mkdir()
                (dcache/'assets').symlink_to(cache_dir()/'assets')
                t0 = time.perf_counter(); dworld = build_world(dw, cache=dcache, progress=False); t1 = time.perf_counter()
                build_benchmarks(dworld, progress=False); t2 = time.perf_counter()
                c = dworld.manifest['counts']
                rows.append(('default world', f"{c['home_train']}+{c['home_validation']} home, {c['web_train']}+{c['web_validation']} web, "
                             f"{dw.image_size} px, {os.environ.get('BABYVLM_THREADS', 2)} workers",
                             f'world {t1 - t0:.1f} s + benchmarks {t2 - t1:.1f} s', f'{t2 - t0:.1f} s (limit 120 s)'))

            train_ds, val_ds = run_training_data(world, p.data, 0)
            fam, cp = get_family('contrastive'), p.contrastive
            tc = replace(cp.train, max_steps=a.steps, eval_every=a.steps, ckpt_every=a.steps, patience=0, progress=False,
                         tensorboard=False)
            t0 = time.perf_counter(); s = fam.train(replace(cp, train=tc), train_ds, val_ds, Path(d)/'run'); dt = time.perf_counter() - t0
            r = s['tasks']['contrastive']   # the task's TrainResult (a dict)
            loaded = fam.load(Path(d)/'run'); model, vocab = loaded.model, loaded.tokenizer
            rows.append(('training', f'{cp.model.arch}, {r["n_trainable"]/1e6:.2f}M params, batch {tc.batch_size}',
                         f'{r["train_steps_per_s"]:.2f} steps/s = {r["train_samples_per_s"]:.0f} samples/s', f'{dt:.1f} s (with setup, validation)'))

            t0 = time.perf_counter(); pt = pair_tensors(train_ds, vocab, model.image_size); dt_dec = time.perf_counter() - t0
            aug = make_augment(model.image_size, cp.images); k = min(len(pt.images), 2000)
            t0 = time.perf_counter()
            for i in range(0, k, tc.batch_size):
                normalize(augment_batch(pt.images[i:i + tc.batch_size], aug, sample_seeds(0, i, range(i, min(k, i + tc.batch_size)))))
            dt_aug = time.perf_counter() - t0
            dec, au = len(train_ds) / dt_dec, k / dt_aug
            rows.append(('input pipeline', f'{len(train_ds)} decoded, {k} augmented, {model.image_size} px',
                         f'decode {dec:.0f} images/s, augment {au:.0f} images/s = {min(dec, au) / r["train_samples_per_s"]:.1f}x '
                         f'the training step', f'{dt_dec + dt_aug:.1f} s'))

            trials = bench.labeled_s
            scorer = fam.scorer(loaded, p.eval.batch_size)
            t0 = time.perf_counter(); m, _ = evaluate_labeled_s(scorer, trials, replace(p.eval, n_boot=200)); dt = time.perf_counter() - t0
            rows.append(('evaluation (Labeled-S)', f'{len(trials)} trials x 4 images', f'{len(trials) / dt:.0f} trials/s = {4 * len(trials) / dt:.0f} pairs/s',
                         f'{dt:.1f} s'))
    if a.study:   # a fresh outputs folder (the world and transfer caches are reused, as a second `make study` would)
        with contextlib.nullcontext(a.study_out) if a.study_out else tempfile.TemporaryDirectory() as d:
            rows.append(study_memory(a.study, a.study_set, Path(d), not a.study_no_report))
    w = [max(len(r[i]) for r in rows + [('stage', 'workload', 'throughput', 'time')]) for i in range(4)]
    line = lambda r: '  '.join(c.ljust(w[i]) for i, c in enumerate(r))
    print(line(('stage', 'workload', 'throughput', 'time'))); print('  '.join('-' * x for x in w))
    for r in rows: print(line(r))
    print(f"\nprofile {a.profile}; torch threads {os.environ.get('BABYVLM_THREADS', 2)}; "
          f"the full profile trains {p.contrastive.train.max_steps} steps on {p.world.n_home_train} pairs")
    return rows


if __name__ == '__main__':
    main()
