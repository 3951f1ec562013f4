#!/usr/bin/env python
"""BabyLLaVA's likelihood scoring: `GenerativeScorer` vs the harness's one-request-at-a-time loop, at the paper's sizes.

The paper's harness (babylmms-eval) scores one (image, text) request at a time: it runs the vision tower on the
request's image and the language model over the whole sequence (image tokens + text), for every request.
`GenerativeScorer` encodes each distinct image once, runs the language model over its image tokens once, and
continues every text of that image from its key/value cache, in batches. On the same model and the same items
(Labeled-S, VTWT and Baby Winoground of the profile's world) this prints requests/s for both, their ratio, and the
largest score difference (must be < 1e-4). A second ratio times the language-model part alone (the vision features
given to both loops): at the paper's sizes the vision pass is most of a request and is paid once per distinct image
by both, so where every image is distinct (the embedded Labeled-S) only the language-model part can be saved.

The model has the paper's sizes by default: a ResNeXt-50 at 224 px (7 x 7 = 49 image tokens of 2048-d) and the
paper's GPT-2 (256-d x 8 layers), random weights (speed does not depend on the weights). `--lm llama` times
BabyLLaVA-Llama with a small Llama instead (the TinyLlama size is a GPU model).

usage: .venv/bin/python benchmarks/bench_likelihood.py [--profile quick] [--n 50] [--batch 64] [--lm gpt2|llama] [--small]
Timings on shared machines vary several-fold between runs; compare the rows of one run (the ratio), not runs.
"""
import argparse, os, time
import numpy as np, torch
from _table import print_table


def harness_loop(model, tok, images, texts, features=None):
    "The harness's rule, one request at a time: vision on the image, the whole sequence through the LM, mean NLL."
    from babyvlm.models.vision import uint8_batch
    from babyvlm.models.generative import lm_loss, build_labels
    out = []
    with torch.no_grad():
        for i, t in enumerate(texts):
            if features is not None: f = features[i:i + 1]   # the language-model part alone: the image's features given
            else:
                im = images[i]   # decoded for each request, as the harness does
                f = model.vision(uint8_batch([im.convert('RGB')], model.vision.image_size))
            ids = tok.encode([t])[0]
            out.append(-lm_loss(model(ids, f), build_labels(ids, f.shape[1])).item())
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='quick', help="the world whose benchmark items are scored")
    ap.add_argument('--n', type=int, default=50, help='items per benchmark')
    ap.add_argument('--batch', type=int, default=64, help='batch size of GenerativeScorer')
    ap.add_argument('--lm', default='gpt2', choices=['gpt2', 'llama'])
    ap.add_argument('--small', action='store_true', help="the profile's small CPU model instead of the paper's sizes")
    a = ap.parse_args()
    from babyvlm.core import set_offline, seed_everything
    from babyvlm.study import load_params, run_training_data
    from babyvlm.world import build_world
    from babyvlm.items import build_benchmarks
    from babyvlm.text import build_tokenizer
    from babyvlm.evaluate import GenerativeScorer, distinct_images
    from babyvlm.benchmarks import LazyImages, image_sources
    from babyvlm.models.generative import create_generative, PAPER_GPT2, GenerativeConfig
    from babyvlm.models.vision import vision_from_spec, ssl_spec, VisionTower, _torchvision_backbone, uint8_batch
    set_offline(); seed_everything(0); torch.set_num_threads(int(os.environ.get('BABYVLM_THREADS', 2)))
    p = load_params(a.profile, 'home', 0, ['family=generative'])
    world = build_world(p.world, progress=False)
    bench = build_benchmarks(world, progress=False)
    train_ds, _ = run_training_data(world, p.data, 0)
    tok = build_tokenizer(train_ds['text'])
    if a.small:
        vision = vision_from_spec(ssl_spec(p.generative.ssl)); cfg = p.generative.model
        if a.lm == 'llama': cfg = GenerativeConfig(**{**cfg.__dict__, 'lm': 'llama'})
        size = 'small (the profile\'s)'
    else:
        spec = dict(kind='torchvision', arch='resnext50_32x4d', image_size=224, grid=7, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        vision = VisionTower(_torchvision_backbone('resnext50_32x4d'), spec)
        cfg = PAPER_GPT2 if a.lm == 'gpt2' else GenerativeConfig(lm='llama', n_embd=256, n_layer=8, n_head=8, n_kv_head=4, n_inner=1024)
        size = "paper (ResNeXt-50 at 224 px, 49 image tokens; " + ('GPT-2 256 x 8)' if a.lm == 'gpt2' else 'Llama 256 x 8, 4 kv heads)')
    model = create_generative(cfg, vision, tok).eval()
    prompt = p.eval.prompt
    requests = {   # (image, text) of every request the harness makes for the first n items
        'labeled_s': [(im, prompt.format(t.target_category)) for t in bench['labeled_s'][:a.n] for im in image_sources(t.images)],
        'vtwt': [(it.image, x) for it in bench['vtwt'][:a.n] for x in (it.positive, it.negative)],
        'baby_winoground': [(im, x) for it in bench['baby_winoground'][:a.n] for im in image_sources(it.images) for x in it.phrases]}
    rows, ratios, lm_ratios = [], [], []
    for name, req in requests.items():
        ims, txts = LazyImages([r[0] for r in req]), [r[1] for r in req]
        t0 = time.perf_counter(); fast = GenerativeScorer(model, tok, batch_size=a.batch).score(ims, txts); t_fast = time.perf_counter() - t0
        t0 = time.perf_counter(); slow = harness_loop(model, tok, ims, txts); t_slow = time.perf_counter() - t0
        diff = float(np.abs(fast - slow).max()); ratios.append(t_slow / t_fast)
        # the language-model part alone (vision features given to both): the image prefix once per image vs per request
        uniq, where = distinct_images(ims)
        with torch.no_grad(): feats = torch.cat([model.vision(uint8_batch(list(uniq[j:j + 16]), model.vision.image_size))
                                                 for j in range(0, len(uniq), 16)])
        scorer = GenerativeScorer(model, tok, batch_size=a.batch)
        t0 = time.perf_counter(); lm_fast = scorer.score_features(lambda lo, hi: feats[lo:hi], len(feats), where, txts); t_lf = time.perf_counter() - t0
        t0 = time.perf_counter(); lm_slow = harness_loop(model, tok, None, txts, feats[where]); t_ls = time.perf_counter() - t0
        lm_ratios.append(t_ls / t_lf); diff = max(diff, float(np.abs(lm_fast - lm_slow).max()))
        rows.append([name, str(min(a.n, len(bench[name]))), str(len(req)), str(len(uniq)),
                     f"{len(req) / t_fast:.1f}", f"{len(req) / t_slow:.2f}", f"{t_slow / t_fast:.1f}x", f"{t_ls / t_lf:.1f}x", f"{diff:.1e}"])
    print_table(['benchmark', 'items', 'requests', 'distinct images', 'GenerativeScorer req/s', 'one-request loop req/s',
                 'ratio', 'ratio, LM part', 'max |score diff|'], rows)
    print(f"\nmodel: {size}, random weights; world of profile {a.profile}; batch {a.batch}; "
          f"torch threads {torch.get_num_threads()}; smallest ratio {min(ratios):.1f}x (whole request), "
          f"{min(lm_ratios):.1f}x (language-model part, vision features given to both)")


if __name__ == '__main__':
    main()
