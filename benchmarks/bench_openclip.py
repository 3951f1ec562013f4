#!/usr/bin/env python
"""Training throughput of our contrastive trainer against open_clip's own trainer, same model and data, one run.

Both trainers train the profile's CVCL model (same config, same initial weights) on the same N home pairs of
the embedded world, with the same batch size, number of steps, AdamW settings (lr, weight decay, betas, eps,
parameter groups), warm-up + cosine schedule, gradient clipping, fp32 and torch thread count:

  ours        the contrastive family of the registry (`babyvlm.families`, trained on the engine `babyvlm.train.fit`):
              decodes every image once into a uint8 tensor, then per step augments the batch (random resized crop +
              flip + blur, seeded per image) in its DataLoader (`--workers` worker processes, as open_clip),
              normalises, steps
  open_clip   `open_clip_train.main.main` (the training script shipped in the open_clip_torch wheel) on a CSV
              of PNG files written from the same pairs: its DataLoader (`--workers`) decodes the PNG, augments
              and tokenises every sample, its loop steps

How one benchmarks a model with a custom text tower in open_clip's loop: `open_clip_train/main.py` builds the
model and the tokenizer from a model name (`from open_clip import create_model_and_transforms, get_tokenizer`),
and CVCL's mean-of-word-embeddings text tower cannot be built from a name by open_clip's factory. So for the
duration of the call this script replaces the two names *in the module `open_clip_train.main`*
(`unittest.mock.patch.object`):

  create_model_and_transforms(name, ...)  ->  (create_contrastive(cfg, vocab) seeded as our family seeds it,
                                               a train transform = our trainer's augmentation + normalisation
                                               on the PIL image, a val transform = open_clip's eval transform)
  get_tokenizer(name, ...)                ->  our `Vocab` as an open_clip tokenizer: a list of utterances ->
                                               LongTensor n x context_length (CsvDataset calls tokenizer([t])[0])

Everything else (argument parsing, device set-up, AdamW and its parameter groups, cosine_lr, ClipLoss from
create_loss, the DataLoader, train_one_epoch, its logging) is open_clip's unmodified code. The CSV holds
exactly steps x batch rows (the pairs our trainer draws, by `batch_indices`), so one open_clip epoch
(`--epochs 1`; a CSV dataset's epoch is its row count, `--train-num-samples` applies to webdataset only) does
the same number of steps on the same pairs (in its own shuffled order).

Measurement, the same on both sides: wall time of every step from the end of the previous step to the end of
this one (data + augmentation + forward/backward/optimizer step; evaluation and checkpoints excluded), summed
over steps skip+1 .. steps-1 (the first `--skip` steps are warm-up; the last step is left out because our
trainer validates and checkpoints inside it). Ours: timestamps taken by an `on_step` hook. open_clip: its
per-step batch time, logged at `--log-every-n-steps 1` as "Batch (t) ..., <samples/s>/s" in out.log
(samples/s = batch / batch time, so batch time = batch / samples/s).

The pairs come from a small embedded world built for the benchmark (and cached under $BABYVLM_CACHE like
every world); all other files (PNGs, CSV, both run folders, open_clip's logs) live in a temporary folder.

usage: .venv/bin/python benchmarks/bench_openclip.py [--pairs 4096] [--steps 60] [--batch-size 64] [--workers 1]
                                                     [--threads N] [--skip 5] [--smoke]
Timings on shared machines vary several-fold between runs; compare rows of one run, not runs.
"""
import argparse, contextlib, csv, hashlib, io, logging, os, re, sys, tempfile, time
from dataclasses import replace
from pathlib import Path
import numpy as np
from _table import print_table

# one open_clip_train log line per step: "Train Epoch: 0 [ 640/2560 (25%)] Data (t): ... Batch (t): 0.412, 155.3/s, ..."
_LOG_RE = re.compile(r"Train Epoch: \d+ \[\s*(\d+)/\s*\d+ \(\d+%\)\] Data \(t\): \S+ Batch \(t\): \S+, "
                     r"([0-9.]+(?:e[+-]?\d+)?)/s,.*?Loss: ([0-9.]+(?:e[+-]?\d+)?|nan|inf)")


class VocabTokenizer:
    "Our `Vocab` behind open_clip's tokenizer interface: a list of utterances -> LongTensor n x context_length."
    def __init__(self, vocab): self.vocab, self.context_length = vocab, vocab.context_length
    def __call__(self, texts, context_length=None):
        if isinstance(texts, str): texts = [texts]
        return self.vocab.encode(list(texts), pad_to=context_length or self.context_length)[0]


class OurAugment:
    "Our trainer's per-image pipeline as a PIL transform: uint8 tensor -> `make_augment` -> `normalize`."
    def __init__(self, size, images):
        from babyvlm.train import make_augment
        self.aug = make_augment(size, images)   # the family's `images` section (an `ImageConfig`)
    def __call__(self, im):
        import torch
        from babyvlm.train import normalize
        x = torch.from_numpy(np.asarray(im.convert('RGB')).copy()).permute(2, 0, 1)
        return normalize(self.aug(x)[None])[0]


def fingerprint(model) -> str:
    "sha256 of the model's state dict (names and values)."
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def steady_rate(step_times:dict, first:int, last:int, batch:int) -> tuple:
    "(samples/s, steps timed) over steps first..last (1-based, inclusive) of {step: seconds}."
    ks = range(first, last + 1)
    missing = [k for k in ks if k not in step_times]
    if missing: raise RuntimeError(f"no timing for steps {missing[:5]} (have {sorted(step_times)[:3]}...)")
    return len(ks) * batch / sum(step_times[k] for k in ks), len(ks)


def parse_openclip_log(text:str, batch:int) -> tuple[dict, dict]:
    "({step: batch time in s}, {step: loss}) from open_clip_train's out.log at --log-every-n-steps 1."
    times, losses = {}, {}
    for m in _LOG_RE.finditer(text):
        step = int(m.group(1)) // batch
        times[step], losses[step] = batch / float(m.group(2)), float(m.group(3))
    return times, losses


def write_csv_dataset(train_ds, idx:list, folder:Path) -> Path:
    "Write the images of `train_ds` as PNG files (their stored bytes) and a CSV (filepath,title) of the rows `idx`."
    from babyvlm.train import undecoded   # the images as stored (bytes or path), as our trainer reads them
    folder.mkdir(parents=True, exist_ok=True)
    paths, texts, i = [], [], 0
    for b in undecoded(train_ds, ['image', 'text']).iter(batch_size=512):
        for im, t in zip(b['image'], b['text']):
            p = folder/f'{i:06d}.png'
            if im.get('bytes'): p.write_bytes(im['bytes'])
            else: p.write_bytes(Path(im['path']).read_bytes())
            paths.append(str(p)); texts.append(t); i += 1
    out = folder/'train.csv'
    with open(out, 'w', newline='') as f:
        w = csv.writer(f); w.writerow(['filepath', 'title'])
        for j in idx: w.writerow([paths[j], texts[j]])
    return out


@contextlib.contextmanager
def patched_open_clip_train(model_cfg, vocab, images, seed:int, record:dict):
    "Make `open_clip_train.main` build our CVCL model, our augmentation and our tokenizer (see the module docstring)."
    from unittest import mock
    import open_clip_train.main as ocm
    from babyvlm.core import seed_everything
    from babyvlm.models.contrastive import create_contrastive, image_preprocess
    tokenizer = VocabTokenizer(vocab)

    def create_model_and_transforms(model_name, pretrained=None, precision='fp32', device='cpu', output_dict=None, **kw):
        if pretrained: raise ValueError(f"the patched factory builds a freshly initialised CVCL model, not {pretrained!r}")
        if precision != 'fp32': raise ValueError(f"the benchmark compares fp32 training, got --precision {precision}")
        seed_everything(seed)   # what the contrastive family does before create_contrastive: the same initial weights
        model = create_contrastive(model_cfg, vocab)
        record.update(model_name=model_name, init=fingerprint(model))
        return model.to(device), OurAugment(model.image_size, images), image_preprocess(model)

    def get_tokenizer(model_name, *a, **kw): return tokenizer

    with mock.patch.object(ocm, 'create_model_and_transforms', create_model_and_transforms), \
         mock.patch.object(ocm, 'get_tokenizer', get_tokenizer):
        yield ocm


def run_open_clip(argv:list, model_cfg, vocab, images, seed:int, log_path:Path) -> dict:
    "Run open_clip's training script in this process with the patch; its console output is kept out of the table."
    import open_clip_train.main   # imported before the logging state is saved: its imports create loggers too
    record, buf = {}, io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {n: l.level for n, l in logging.root.manager.loggerDict.items() if isinstance(l, logging.Logger)})
    t0 = time.perf_counter()
    try:
        with patched_open_clip_train(model_cfg, vocab, images, seed, record) as ocm, \
             contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = ocm.main(argv)
    except BaseException:
        sys.stderr.write(f"open_clip_train.main failed; the end of its output:\n{buf.getvalue()[-6000:]}\n"); raise
    finally:   # open_clip's setup_logging adds handlers to the root logger and sets every logger's level
        for h in root.handlers[:]:
            if h not in saved[0]: root.removeHandler(h); h.close()
        root.setLevel(saved[1])
        for n, l in list(logging.root.manager.loggerDict.items()):
            if isinstance(l, logging.Logger): l.setLevel(saved[2].get(n, logging.NOTSET))
    if rc not in (None, 0): raise RuntimeError(f"open_clip_train.main returned {rc}:\n{buf.getvalue()[-3000:]}")
    if not log_path.exists(): raise RuntimeError(f"open_clip_train wrote no log at {log_path}:\n{buf.getvalue()[-3000:]}")
    record.update(log=log_path.read_text(), wall_s=time.perf_counter() - t0)
    return record


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='quick', help="profile whose contrastive section (model, train, images) is used")
    ap.add_argument('--pairs', type=int, default=4096, help='training pairs (home pairs of the embedded world)')
    ap.add_argument('--steps', type=int, default=60, help='optimizer steps, both trainers')
    ap.add_argument('--batch-size', type=int, default=64, help='batch size, both trainers')
    ap.add_argument('--workers', type=int, default=1, help="DataLoader worker processes, both trainers (open_clip_train's --workers, our train.num_workers)")
    ap.add_argument('--threads', type=int, default=int(os.environ.get('BABYVLM_THREADS', 2)),
                    help='torch CPU threads, both trainers (default: $BABYVLM_THREADS or 2)')
    ap.add_argument('--skip', type=int, default=5, help='warm-up steps left out of the timing, both trainers (>= 1)')
    ap.add_argument('--seed', type=int, default=0, help='seed of initialisation, data order and augmentation')
    ap.add_argument('--smoke', action='store_true', help='tiny run for the test: 256 pairs, 6 steps, batch 16, skip 2')
    a = ap.parse_args(argv)
    if a.smoke: a.pairs, a.steps, a.batch_size, a.skip = 256, 6, 16, 2
    a.skip = max(1, a.skip)
    if a.steps < a.skip + 2: ap.error(f"--steps must be at least --skip + 2 = {a.skip + 2} (steps skip+1 .. steps-1 are timed)")
    if a.pairs < a.batch_size: ap.error(f"--pairs {a.pairs} is smaller than one batch of {a.batch_size}")
    os.environ['BABYVLM_THREADS'] = str(a.threads)   # seed_everything (called by both sides) sets torch's threads from it
    import torch
    torch.set_num_threads(a.threads)
    from babyvlm.core import set_offline, seed_everything
    from babyvlm.study import load_params
    from babyvlm.world import build_world
    from babyvlm.text import build_vocab
    from babyvlm.models.contrastive import create_contrastive
    from babyvlm.train import batch_indices
    from babyvlm.families import get_family
    set_offline(); seed_everything(a.seed)
    p = load_params(a.profile, 'home', seed=a.seed)
    cp = p.contrastive   # the contrastive family's section: model, train, images (init_vision: from scratch here)
    if cp.init_vision: raise SystemExit(f"profile {a.profile}: contrastive.init_vision is set; open_clip's loop would start from scratch")
    device = 'cuda' if torch.cuda.is_available() else 'cpu'   # where accelerate puts our trainer

    # --- the same data: home pairs of a small embedded world (cached under $BABYVLM_CACHE) -------------------
    t0 = time.perf_counter()
    wc = replace(p.world, n_home_train=a.pairs, n_home_val=max(32, a.batch_size), n_web=8, n_web_val=4,
                 labeled_s_per_category=1, n_vtwt=4, n_winoground=2, n_captions=2, real_photo_trials_per_image=1)
    world = build_world(wc, progress=False, workers=a.threads)
    train_ds, val_ds = world.home['train'], world.home['validation']
    t_world = time.perf_counter() - t0
    vocab = build_vocab(train_ds['text'])
    tc = replace(cp.train, max_steps=a.steps, batch_size=a.batch_size, eval_every=a.steps, ckpt_every=a.steps,
                 patience=0, progress=False, tensorboard=False, mixed_precision='no', seed=a.seed,
                 num_workers=a.workers)   # batches made (augmented) in as many worker processes as open_clip's
    seed_everything(tc.seed); model = create_contrastive(cp.model, vocab)   # as the family builds it (seed, vocabulary, config)
    side = train_ds[0]['image'].size
    if side != (model.image_size, model.image_size):   # open_clip's transform then does exactly our per-step work
        raise SystemExit(f"world images are {side}, the model takes {model.image_size} px; use a profile where they match")
    init_ours = fingerprint(model)
    first, last = a.skip + 1, a.steps - 1

    with tempfile.TemporaryDirectory(prefix='bench_openclip_') as d:
        d = Path(d)
        # --- ours ------------------------------------------------------------------------------------------
        stamps, losses_ours = {}, {}
        def on_step(step, rec):
            stamps[step] = time.perf_counter()
            if 'loss' in rec: losses_ours[step] = rec['loss']
        t0 = time.perf_counter()
        summary = get_family('contrastive').train(replace(cp, train=tc), train_ds, val_ds, d/'ours', on_step=on_step)
        t_ours = time.perf_counter() - t0
        r = summary['tasks']['contrastive']   # its TrainResult (a dict)
        times_ours = {k: stamps[k] - stamps[k - 1] for k in range(2, a.steps + 1)}
        sps_ours, n_ours = steady_rate(times_ours, first, last, a.batch_size)
        del model

        # --- open_clip_train on the same pairs (the CSV lists the pairs our trainer drew, step by step) --------
        idx = torch.cat([batch_indices(s, len(train_ds), a.batch_size, tc.seed) for s in range(a.steps)]).tolist()
        csv_path = write_csv_dataset(train_ds, idx, d/'data')
        b1, b2 = tc.betas
        oc_argv = ['--train-data', str(csv_path), '--dataset-type', 'csv', '--csv-img-key', 'filepath',
                   '--csv-caption-key', 'title', '--csv-separator', ',', '--model', cp.model.arch,
                   '--batch-size', str(a.batch_size), '--epochs', '1', '--workers', str(a.workers),
                   '--device', device, '--precision', 'fp32', '--lr', str(tc.lr), '--wd', str(tc.weight_decay),
                   '--beta1', str(b1), '--beta2', str(b2), '--eps', '1e-8', '--warmup', str(tc.warmup_steps),
                   '--lr-scheduler', 'cosine' if tc.schedule == 'cosine' else 'const', '--seed', str(tc.seed),
                   '--logs', str(d/'openclip_logs'), '--name', 'run', '--save-frequency', '0', '--val-frequency', '0',
                   '--zeroshot-frequency', '0', '--report-to', '', '--log-every-n-steps', '1']
        if tc.grad_clip: oc_argv += ['--grad-clip-norm', str(tc.grad_clip)]
        rec = run_open_clip(oc_argv, cp.model, vocab, cp.images, tc.seed, d/'openclip_logs'/'run'/'out.log')
        times_oc, losses_oc = parse_openclip_log(rec['log'], a.batch_size)
        if sorted(times_oc) != list(range(1, a.steps + 1)):
            raise RuntimeError(f"open_clip_train logged steps {sorted(times_oc)[:3]}..{sorted(times_oc)[-3:]}, expected 1..{a.steps}")
        sps_oc, n_oc = steady_rate(times_oc, first, last, a.batch_size)

    ratio = sps_ours / sps_oc
    span = f"{n_ours} (steps {first}-{last} of {a.steps})"
    head = ('trainer', 'steps timed', 'samples/s', 'ours/open_clip', 'how measured')
    rows = [('ours: babyvlm.families contrastive on babyvlm.train.fit', span, f'{sps_ours:.1f}', f'{ratio:.2f}',
             f"on_step timestamps; images pre-decoded once (outside the timing), augmented in {a.workers} DataLoader worker(s)" if a.workers else 'on_step timestamps; images pre-decoded once (outside the timing), augmented in the training process'),
            ('open_clip: open_clip_train.main (patched)', f"{n_oc} (steps {first}-{last} of {a.steps})", f'{sps_oc:.1f}', '1.00',
             f"'Batch (t)' of every step in out.log; PNG decode + augmentation + tokenising in {a.workers} DataLoader worker(s)")]
    print_table(head, rows)
    tail = lambda L: np.mean([L[k] for k in range(max(1, last - 4), last + 1)])
    print(f"\nratio ours/open_clip = {ratio:.2f} (target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")
    print(f"model {cp.model.arch} ({r['n_trainable']/1e6:.2f}M params, {model_cfg_desc(cp)}), {len(train_ds)} home pairs of the "
          f"embedded world at {side[0]} px, batch {a.batch_size}, {a.steps} steps, lr {tc.lr} warm-up {tc.warmup_steps} "
          f"{tc.schedule}, wd {tc.weight_decay}, betas {tuple(tc.betas)}, grad clip {tc.grad_clip}, fp32, device {device}, "
          f"torch threads {a.threads}, DataLoader workers {a.workers} (both)")
    print(f"same initial weights: {'yes' if rec.get('init') == init_ours else 'NO'} (sha256 {init_ours} / {rec.get('init')}); "
          f"mean loss of the last 5 timed steps: ours {tail(losses_ours):.3f}, open_clip {tail(losses_oc):.3f} "
          f"(same pairs, different batch order)")
    print(f"ours over all {r['steps']} steps (its own TrainResult.train_samples_per_s, warm-up included): "
          f"{r['train_samples_per_s']:.1f} samples/s; whole calls (setup, decoding, validation, checkpoint): ours "
          f"{t_ours:.1f} s, open_clip {rec['wall_s']:.1f} s; world {t_world:.1f} s")
    print("both: InfoNCE (open_clip.ClipLoss), AdamW with the same parameter groups and no decay on biases/norms/"
          "logit_scale, the same warm-up + cosine formula, our augmentation (random resized crop, flip, blur) + "
          "CLIP normalisation. Differences: ours seeds each image's augmentation (SeedSequence per sample) and "
          "decodes the PNGs once before training; open_clip decodes and tokenises every sample every time "
          f"({'in worker processes, as ours augments' if a.workers else 'in the training process'}), "
          "logs every step (two .item() calls + a log line) and clamps logit_scale; ours validates and checkpoints "
          "in the last step (not timed)"
          + ("; open_clip_train turns on TF32 matmuls on CUDA" if device == 'cuda' else '') + '.')
    return dict(ours=sps_ours, open_clip=sps_oc, ratio=ratio, steps_timed=n_ours)


def model_cfg_desc(cp) -> str:
    return f"temperature {cp.model.temperature}{' learned' if cp.model.learn_temperature else ' fixed'}"


if __name__ == '__main__':
    main()
