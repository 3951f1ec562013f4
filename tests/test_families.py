"""Every family on the one engine: a run killed mid-training resumes to the
weights of an uninterrupted one, images decoded per batch in worker processes change nothing, a finished run is not
trained again, and a run folder is recognised and scored through the registry."""
from dataclasses import replace
from types import SimpleNamespace
import pytest, torch
from babyvlm.train import TrainConfig, ImageConfig
from babyvlm.families import (FAMILIES, get_family, detect_family, score_run, ContrastiveParams, GenerativeParams, HybridParams,
                              ReferenceParams)
from babyvlm.models.contrastive import ContrastiveConfig
from babyvlm.models.generative import GenerativeConfig
from babyvlm.models.vision import SSLConfig
from babyvlm.models.hybrid import CoCaConfig
from babyvlm.models.reference import ReferenceConfig
from babyvlm.evaluate import EvalConfig
from babyvlm.testing import toy_pairs, kill_at, Interrupt

T = dict(batch_size=16, lr=2e-3, warmup_steps=2, eval_every=4, ckpt_every=4, val_batch_size=16, progress=False, tensorboard=False)


def _params(family, **kw):
    "Tiny params of each family; `kw` replaces fields of every TrainConfig / ImageConfig."
    tc = lambda steps, **extra: TrainConfig(**{**T, 'max_steps': steps, **extra, **{k: v for k, v in kw.items() if k in TrainConfig.__dataclass_fields__}})
    ic = ImageConfig(**{k: v for k, v in kw.items() if k in ImageConfig.__dataclass_fields__})
    if family == 'contrastive': return ContrastiveParams(ContrastiveConfig(image_size=32), tc(12), ic)
    if family == 'generative':
        return GenerativeParams(GenerativeConfig(n_embd=32, n_layer=1, n_head=2, n_inner=64), vision='ssl', ssl=SSLConfig(widths=(8, 16, 32), image_size=32, grid=2, proj_dim=16),
                                ssl_train=tc(8), ssl_images=ic, language=tc(8, select='last'), projector=tc(8, select='last'), full=tc(8, select='last'))
    if family == 'hybrid': return HybridParams(CoCaConfig(image_size=32), tc(12), ic)
    if family == 'reference': return ReferenceParams(ReferenceConfig(image_size=32), tc(12))


@pytest.fixture(scope='module')
def pairs():
    return toy_pairs(48, seed=1), toy_pairs(32, seed=2)


def _weights(family, out):
    return {k: v.clone() for k, v in get_family(family).load(out).model.state_dict().items()}


def _same(a, b, eps):
    assert a.keys() == b.keys()
    for k in a: assert torch.allclose(a[k], b[k], atol=eps), (k, (a[k] - b[k]).abs().max().item())


def test_the_registry_holds_the_four_families():
    assert list(FAMILIES) == ['contrastive', 'generative', 'generative_llama', 'hybrid', 'reference']
    for f in FAMILIES.values(): assert f.files and f.saved_as and f.caption_kind in ('generated', 'retrieved')


@pytest.mark.parametrize('family', ['contrastive', 'generative', 'hybrid', 'reference'])
def test_seed_resume_and_streaming_for_every_family(family, pairs, tmp_path):
    tr, va = pairs
    fam = get_family(family)
    s1 = fam.train(_params(family), tr, va, tmp_path/'a'); w1 = _weights(family, tmp_path/'a')
    with pytest.raises(Interrupt):                                     # killed after step 6 of its first task
        fam.train(_params(family), tr, va, tmp_path/'k', on_step=kill_at(6))
    s3 = fam.train(_params(family), tr, va, tmp_path/'k')
    assert s3['resumed_from'] == 4                                     # from the checkpoint at step 4
    _same(w1, _weights(family, tmp_path/'k'), 1e-6)
    s4 = fam.train(_params(family), tr, va, tmp_path/'a')              # finished: nothing trains, same weights
    assert all(t['train_steps_per_s'] is None for t in s4['tasks'].values())
    _same(w1, _weights(family, tmp_path/'a'), 0)
    if family != 'reference':                                          # (the reference trains on cached features, not images)
        s2 = fam.train(_params(family, preload_max_gb=0.0, num_workers=1), tr, va, tmp_path/'s')
        _same(w1, _weights(family, tmp_path/'s'), 0)                   # decoded per batch, in a worker: the same run
        assert s2['final_val_loss'] == s1['final_val_loss']
    assert detect_family(tmp_path/'a').name == family
    ims, txts = va['image'][:8], va['text'][:8]
    items = [SimpleNamespace(item_id=str(i), image=ims[i], positive=txts[i], negative=txts[(i + 3) % 8]) for i in range(8)]
    res, preds, ctl = score_run(fam.load(tmp_path/'a'), {'vtwt': items}, EvalConfig(n_boot=10, batch_size=3), candidates=tr['text'])
    assert res['vtwt']['n_items'] == 8 and len(preds['vtwt']) == 8 and sorted(ctl) == ['blind', 'text_prior']
    again, _, _ = score_run(fam.load(tmp_path/'k'), {'vtwt': items}, EvalConfig(n_boot=10, batch_size=8), candidates=tr['text'])
    assert again['vtwt'] == res['vtwt']                               # the resumed model, another batch size: the same scores


def test_changed_settings_are_refused_by_name(pairs, tmp_path):
    tr, va = pairs
    fam = get_family('generative')
    fam.train(_params('generative'), tr, va, tmp_path)
    p = _params('generative'); p = replace(p, projector=replace(p.projector, lr=1e-2))
    with pytest.raises(ValueError, match=r'phase1_projector.*train\.lr differ'):
        fam.train(p, tr, va, tmp_path)


def test_a_family_needs_validation_data(pairs, tmp_path):
    tr, va = pairs
    for family in FAMILIES:
        with pytest.raises(ValueError, match='validation dataset is empty'):
            get_family(family).train(_params(family), tr, va.select([]), tmp_path/family)
