#!/usr/bin/env python
"""Training throughput of the paper-profile models on synthetic 224-px data: samples/s, peak memory and MFU.

Rows (issue 6):
  cvcl_resnext50        CVCL (params/profiles/paper.yaml): open_clip ResNeXt-50 image tower at 224 px, mean-of-word-
                        embeddings text tower, InfoNCE at the fixed temperature 0.07 (open_clip.ClipLoss, as
                        the contrastive family does on the engine), AdamW lr 1e-4 wd 0.1, grad clip 1.0. At --batch and at
                        the paper's batch 8.
  babyllava_p2_vision   BabyLLaVA phase 2 (projector + GPT-2 trained, vision frozen): PAPER_GPT2 (256-d, 8 layers,
                        32 heads, inner 1024, dropout 0.15), frozen random-weight ResNeXt-50 giving 7x7 = 49 tokens at
                        224 px, 2048->256->256 GELU projector, 49 image + 27 text tokens; vision run every step.
  babyllava_p2_cached   the same step on cached vision features (bf16, 49 x 2048), as the generative family caches them
                        (`babyvlm.models.vision.image_features`); the loss is the family's (`lm_loss_sum` + `global_mean`).

Only the model step is timed: the synthetic uint8 images and token ids sit on the device beforehand (no loader, no
augmentation). On CUDA: bf16 autocast, TF32 matmuls, channels-last convolutions, cuDNN autotuning, fused AdamW; no
host sync in the step loop (the loss is read once after timing). FLOPs of one training step are counted once, outside
the timing, with torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions, attention; forward and backward);
MFU = those FLOPs / measured step time / the GPU's peak dense bf16 rate. "syncs" is the number of host syncs that
torch.cuda.set_sync_debug_mode reports for one step (library code included).

usage: python benchmarks/gpu_check.py [--steps 50] [--warmup 10] [--batch 128] [--json out.json]
       python benchmarks/gpu_check.py --device cpu --steps 2 --batch 2      # smoke test (no MFU)
benchmarks/gpu_check.sh wraps it for the GPU machine (environment report, offline wheel install).
"""
import argparse, gc, json, math, os, sys, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

# Peak dense (no sparsity) bf16 tensor-core FLOP/s by device-name fragment, first match wins (vendor datasheets).
PEAKS = [('H100 PCIe', 756e12), ('H100 NVL', 835e12), ('H100', 989e12), ('H200', 989e12), ('GH200', 989e12),
         ('A100', 312e12), ('L40S', 362e12), ('A10G', 70e12), ('L4', 121e12)]

def peak_flops(device_name:str, override_tflops:float|None=None):
    "(peak FLOP/s, where it came from) for `device_name`; (None, reason) when unknown."
    if override_tflops: return override_tflops * 1e12, f"--peak-tflops {override_tflops:g}"
    for frag, v in PEAKS:
        if frag.lower() in device_name.lower(): return v, f"{frag} dense bf16 {v/1e12:g} TFLOP/s"
    return None, f"unknown device {device_name!r}: no MFU (pass --peak-tflops)"


def _sync(dev):
    if dev.type == 'cuda': import torch; torch.cuda.synchronize(dev)

def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, groups, output_mask, out_shape=None, **kw) -> int:
    "convolution_backward FLOPs: torch's formula counts grad_weight of a grouped convolution `groups` times over."
    from torch.utils.flop_counter import conv_flop_count
    n = 0
    if output_mask[0]: n += conv_flop_count(list(grad_out_shape), list(w_shape), list(out_shape[0]), not transposed)
    if output_mask[1]: n += conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)  # = forward's
    return n

def count_flops(step) -> int:
    "FLOPs of one call of `step` (a full training step), counted by FlopCounterMode (grouped-conv backward corrected)."
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) as fc: step()
    return int(fc.get_total_flops())

def count_syncs(step, dev) -> int|None:
    "Host syncs during one call of `step`, as torch.cuda's sync debug mode reports them (None off CUDA)."
    if dev.type != 'cuda': return None
    import torch
    def n_syncs(fn):
        _sync(dev)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try: fn()
            finally: torch.cuda.set_sync_debug_mode('default')
        _sync(dev)
        return sum('synchroniz' in str(x.message).lower() for x in w)
    if n_syncs(lambda: torch.ones(1, device=dev).item()) < 1: return None  # the warnings do not reach Python here
    return n_syncs(step)

def measure(name:str, batch:int, step, dev, a, peak) -> dict:
    "Count FLOPs and syncs, warm up, then time `a.steps` steps with one sync at the end."
    import torch
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    flops = count_flops(step)  # also the first warm-up step
    syncs = count_syncs(step, dev)
    for _ in range(a.warmup): step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(a.steps): loss = step()
    _sync(dev)
    dt = (time.perf_counter() - t0) / a.steps
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None
    loss = float(loss.detach().float().cpu())
    r = dict(model=name, batch=batch, step_ms=dt * 1e3, samples_per_s=batch / dt, gflop_per_step=flops / 1e9,
             tflops=flops / dt / 1e12, mfu=(flops / dt / peak) if peak else None, peak_mem_gib=mem, syncs=syncs,
             loss=loss, finite=math.isfinite(loss))
    print(f"  {name} batch {batch}: {r['step_ms']:.1f} ms/step, {r['samples_per_s']:.1f} samples/s"
          + (f", MFU {r['mfu']:.1%}" if r['mfu'] is not None else '') + (f", peak {mem:.2f} GiB" if mem is not None else ''),
          flush=True)
    return r


def _free(dev):
    import torch
    gc.collect()
    if dev.type == 'cuda': torch.cuda.empty_cache()

def _autocast(dev, amp):
    import torch, contextlib
    return torch.autocast(dev.type, dtype=torch.bfloat16) if amp == 'bf16' else contextlib.nullcontext()

def _ids(n:int, length:int, vocab_size:int, gen, sos_eos:bool):
    "Right-padded random token ids (n x length), lengths uniform in [2, length]."
    import torch
    from babyvlm.text import PAD, SOS, EOS
    ids = torch.randint(4, vocab_size, (n, length), generator=gen)
    lens = torch.randint(2, length + 1, (n,), generator=gen)
    pos = torch.arange(length)[None]
    if sos_eos:
        ids[:, 0] = SOS
        ids[pos == (lens[:, None] - 1)] = EOS
    return ids.masked_fill(pos >= lens[:, None], PAD)

def _images(n:int, size:int, gen, dev):
    import torch
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen).to(dev)
    return x.contiguous(memory_format=torch.channels_last) if dev.type == 'cuda' else x

def _adamw(params, dev, **kw):
    import torch
    return torch.optim.AdamW(params, fused=dev.type == 'cuda', **kw)


def bench_contrastive(batch:int, vocab, dev, a, peak, pool:int=2) -> dict:
    "CVCL (cvcl_resnext50, 224 px) trained with InfoNCE at the fixed temperature, as the contrastive family does."
    import torch, open_clip
    from babyvlm.models.contrastive import create_contrastive, ContrastiveConfig
    from babyvlm.train import normalize, _param_groups
    torch.manual_seed(0); gen = torch.Generator().manual_seed(0)
    model = create_contrastive(ContrastiveConfig(arch='cvcl_resnext50', image_size=224, temperature=0.07), vocab).to(dev)
    if dev.type == 'cuda': model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = _adamw(_param_groups(model, 0.1), dev, lr=1e-4, betas=(0.9, 0.98))
    loss_fn = open_clip.ClipLoss()
    images = [_images(batch, 224, gen, dev) for _ in range(pool)]
    ids = [_ids(batch, model.context_length, len(vocab), gen, False).to(dev) for _ in range(pool)]
    params = [p for p in model.parameters() if p.requires_grad]
    it = [0]
    def step():
        i = it[0] % pool; it[0] += 1
        with _autocast(dev, a.amp):
            out = model(normalize(images[i]), ids[i])
            loss = loss_fn(out['image_features'].float(), out['text_features'].float(), out['logit_scale'])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss
    r = measure('cvcl_resnext50', batch, step, dev, a, peak)
    r['params_m'] = sum(p.numel() for p in model.parameters()) / 1e6
    del model, opt, images, ids, params; _free(dev)
    return r


def bench_generative(batch:int, dev, a, peak, pool:int=2) -> list[dict]:
    "BabyLLaVA phase 2 (projector + GPT-2 trained, frozen ResNeXt-50): vision every step, then cached features."
    import torch
    from babyvlm.text import build_tokenizer
    from babyvlm.models.vision import VisionTower, backbone_from_spec, _IMAGENET
    from babyvlm.models.generative import PAPER_GPT2, create_generative, build_labels, lm_loss_sum
    from babyvlm.train import global_mean
    torch.manual_seed(0); gen = torch.Generator().manual_seed(0)
    # the spec dino_vision builds (random weights instead of the DINO checkpoint: throughput does not depend on them)
    spec = dict(kind='torchvision', arch='resnext50_32x4d', image_size=224, grid=7, mean=list(_IMAGENET[0]),
                std=list(_IMAGENET[1]), source='random')
    vision = VisionTower(backbone_from_spec(spec), spec)
    tok = build_tokenizer(['a ball on the floor', 'the cat sat on the mat'])
    model = create_generative(PAPER_GPT2, vision, tok).to(dev)
    if dev.type == 'cuda': model.vision.to(memory_format=torch.channels_last)
    model.train()  # dropout on; the vision tower stays in eval mode (VisionTower.train)
    for p in model.projector.parameters(): p.requires_grad = True
    for p in model.lm.parameters(): p.requires_grad = True
    k, L = model.n_image_tokens, tok.context_length
    opt = _adamw([p for p in model.parameters() if p.requires_grad], dev, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.1)
    images = [_images(batch, 224, gen, dev) for _ in range(pool)]
    ids = [_ids(batch, L, len(tok), gen, True).to(dev) for _ in range(pool)]
    with torch.no_grad(), _autocast(dev, a.amp):
        feats = [model.vision(im).to(torch.bfloat16 if dev.type == 'cuda' else torch.float32) for im in images]
    params = [p for p in model.parameters() if p.requires_grad]
    it = [0]
    def make_step(cached:bool):
        def step():
            i = it[0] % pool; it[0] += 1
            with _autocast(dev, a.amp):
                if cached: f = feats[i]
                else:
                    with torch.no_grad(): f = model.vision(images[i])
                loss = global_mean(*lm_loss_sum(model(ids[i], f), build_labels(ids[i], k)))   # the phases' loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return loss
        return step
    info = dict(params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                trainable_m=sum(p.numel() for p in params) / 1e6, tokens=f"{k}+{L}", vocab=len(tok))
    rows = [dict(measure('babyllava_p2_vision', batch, make_step(False), dev, a, peak), **info),
            dict(measure('babyllava_p2_cached', batch, make_step(True), dev, a, peak), **info)]
    del model, opt, images, ids, feats, params, vision; _free(dev)
    return rows


def table(rows:list[dict]) -> str:
    "The results as a fixed-width text table."
    def f(v, fmt): return '-' if v is None else format(v, fmt)
    head = f"{'model':<22}{'batch':>6}{'ms/step':>10}{'samples/s':>11}{'GFLOP/step':>12}{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}{'syncs':>7}{'loss':>8}"
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<22}{r['batch']:>6}{f(r['step_ms'], '.1f'):>10}{f(r['samples_per_s'], '.1f'):>11}"
                     f"{f(r['gflop_per_step'], '.1f'):>12}{f(r['tflops'], '.1f'):>9}{f(r['mfu'], '.1%'):>7}"
                     f"{f(r['peak_mem_gib'], '.2f'):>10}{f(r['syncs'], 'd'):>7}{f(r['loss'], '.3f'):>8}")
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cuda', help="'cuda' (default) or 'cpu' (smoke test)")
    ap.add_argument('--steps', type=int, default=50, help='timed steps per model')
    ap.add_argument('--warmup', type=int, default=None, help='untimed steps before timing (default: 10, 1 on cpu)')
    ap.add_argument('--batch', type=int, default=128, help='batch size of every model')
    ap.add_argument('--paper-batch', type=int, default=None, help="extra CVCL row at the paper's batch (default: 8 on cuda, none on cpu; 0: none)")
    ap.add_argument('--amp', choices=['bf16', 'none'], default=None, help='autocast dtype (default: bf16 on cuda, none on cpu)')
    ap.add_argument('--peak-tflops', type=float, default=None, help='peak dense bf16 TFLOP/s for MFU (default: from the device name)')
    ap.add_argument('--only', choices=['all', 'contrastive', 'generative'], default='all', help='which models')
    ap.add_argument('--json', default='', help='also write the rows and environment to this JSON file')
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    import torch
    from babyvlm.text import build_vocab
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    if cuda and not torch.cuda.is_available(): raise SystemExit("gpu_check: --device cuda but torch sees no GPU (use --device cpu)")
    a.warmup = (10 if cuda else 1) if a.warmup is None else a.warmup
    a.amp = a.amp or ('bf16' if cuda else 'none')
    a.paper_batch = (8 if cuda else 0) if a.paper_batch is None else a.paper_batch
    if min(a.steps, a.batch) < 1 or a.warmup < 0: raise SystemExit("gpu_check: --steps and --batch must be >= 1, --warmup >= 0")
    torch.set_num_threads(int(os.environ.get('BABYVLM_THREADS', torch.get_num_threads())))
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(dev)
    else: name = 'cpu'
    peak, peak_src = peak_flops(name, a.peak_tflops) if cuda else (None, 'cpu: no MFU')
    env = dict(device=name, torch=torch.__version__, cuda=torch.version.cuda, python=sys.version.split()[0], amp=a.amp,
               steps=a.steps, warmup=a.warmup, peak_flops=peak, peak_source=peak_src)
    print(f"gpu_check: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); amp {a.amp}; "
          f"{a.warmup} warm-up + {a.steps} timed steps; peak assumed: {peak_src}", flush=True)
    vocab = build_vocab(['a ball on the floor', 'the cat sat on the mat'])  # CVCL's vocabulary plus these words
    rows = []
    if a.only in ('all', 'contrastive'):
        for b in [a.batch] + ([a.paper_batch] if a.paper_batch and a.paper_batch != a.batch else []):
            rows.append(bench_contrastive(b, vocab, dev, a, peak))
    if a.only in ('all', 'generative'):
        rows += bench_generative(a.batch, dev, a, peak)
    wall = time.perf_counter() - t_start
    print(f"\n== gpu_check results ({name}; amp {a.amp}; {a.steps} timed steps after {a.warmup} warm-up; "
          f"MFU against {peak_src})")
    print(table(rows))
    print(f"total wall time {wall:.1f} s")
    bad = [r['model'] for r in rows if not r['finite']]
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(dict(env=env, rows=rows, wall_s=wall), indent=1) + '\n')
    if bad: raise SystemExit(f"gpu_check: non-finite loss in {bad}")
    return rows


if __name__ == '__main__': main()
