"""The generative families read their image.

On a toy world where only the image says which colour and shape the caption names (`babyvlm.testing.toy_pairs`),
a trained BabyLLaVA (GPT-2 and Llama) must score a validation pair higher with its own image than with another
pair's image by a stated margin (`MARGIN` nats per token, interval above zero), and pick the image its caption
describes among four (a Labeled-S-shaped choice) well above chance. The same checks applied to the model without
its image (`Family.blind`) fail, so these tests can fail: an image-blind model, as BabyLLaVA was before its
positions and phase budgets were fixed (own -2.6362 vs shuffled -2.6367 in the default study), does not pass.
"""
import numpy as np, pytest, torch
from babyvlm.core import seed_everything
from babyvlm.evaluate import image_dependence
from babyvlm.families import get_family, GenerativeParams, LlamaParams
from babyvlm.models.generative import GenerativeConfig
from babyvlm.models.vision import SSLConfig
from babyvlm.testing import toy_pairs
from babyvlm.train import TrainConfig

MARGIN = 0.3        # nats per token: own image vs another pair's image
CHOICE = 0.5        # 4-way choice accuracy (chance 0.25)
PC = dict(batch_size=32, warmup_steps=5, eval_every=50, ckpt_every=1000, tensorboard=False, progress=False, select='last',
          betas=(0.9, 0.95), weight_decay=0.1)
MODELS = {'generative': (GenerativeParams, GenerativeConfig(n_embd=48, n_layer=1, n_head=2, n_inner=96, dropout=0.0),
                         SSLConfig(widths=(8, 16, 32), image_size=32, grid=2, proj_dim=32)),
          'generative_llama': (LlamaParams, GenerativeConfig(lm='llama', n_embd=48, n_layer=1, n_head=2, n_kv_head=1, n_inner=96, dropout=0.0),
                               SSLConfig(arch='vit', image_size=32, grid=2, vit_patch=8, vit_width=32, vit_depth=2, vit_heads=2, proj_dim=32))}


@pytest.fixture(scope='module')
def toy():
    return toy_pairs(512, seed=0), toy_pairs(96, seed=1)


def _choice(scorer, images, texts, categories, seed=0):
    "Labeled-S-shaped: for each pair, its text against its image and 3 images of other shapes; accuracy of the argmax."
    rng = np.random.default_rng(seed); ok = []
    cats = np.array(categories)
    for i in range(len(texts)):
        foils = rng.choice(np.flatnonzero(cats != cats[i]), 3, replace=False)
        cand = [i, *foils]
        s = scorer.score([images[j] for j in cand], [texts[i]] * 4)
        ok.append(int(np.argmax(s) == 0 and (s[0] > s[1:]).all()))
    return float(np.mean(ok))


@pytest.fixture(scope='module', params=list(MODELS))
def trained(request, toy, tmp_path_factory):
    family = request.param
    cls, model, ssl = MODELS[family]
    p = cls(model, vision='ssl', ssl=ssl, ssl_train=TrainConfig(max_steps=60, lr=3e-3, **PC),
            language=TrainConfig(max_steps=200, lr=5e-3, **PC), projector=TrainConfig(max_steps=150, lr=5e-3, **PC),
            full=TrainConfig(max_steps=200, lr=2e-3, **PC))
    seed_everything(0, threads=1)
    out = tmp_path_factory.mktemp(family)
    fam = get_family(family); fam.train(p, *toy, out)
    return fam, fam.load(out)


def test_the_model_scores_its_own_image_above_another(trained, toy):
    fam, l = trained
    va = toy[1]; ims, txts = list(va['image']), list(va['text'])
    dep = image_dependence(fam.scorer(l, 64), ims, txts, blind=fam.blind(l, 64, []))
    print(fam.name, {k: round(v, 3) for k, v in dep.items()})
    assert dep['margin'] > MARGIN and dep['margin_ci_low'] > 0, dep
    assert dep['own'] > dep['blind'], dep                        # the image helps over no image at all
    blind = image_dependence(fam.blind(l, 64, []), ims, txts)    # the same check on the image-blind model fails
    assert not (blind['margin'] > MARGIN), blind


def test_the_model_picks_the_image_its_caption_describes(trained, toy):
    fam, l = trained
    va = toy[1]; ims, txts, cats = list(va['image']), list(va['text']), list(va['category'])
    acc = _choice(fam.scorer(l, 64), ims, txts, cats)
    blind_acc = _choice(fam.blind(l, 64, []), ims, txts, cats)
    print(fam.name, 'choice', acc, 'blind', blind_acc)
    assert acc > CHOICE, acc
    assert blind_acc < CHOICE, blind_acc                         # a text-only model ties every choice (counted wrong)
