"Training on the engine (the contrastive family): determinism, exact resume after a kill, early stopping, checkpoints, bad inputs; the tokenizer and model I/O."
import json
from pathlib import Path
import pytest, torch
from babyvlm.core import seed_everything
from babyvlm.text import build_vocab, tokenize, Vocab
from babyvlm.models.contrastive import ContrastiveConfig, create_contrastive, load_contrastive, save_contrastive
from babyvlm.train import TrainConfig, ImageConfig, ImagePairs, pair_tensors
from babyvlm.families import ContrastiveParams, get_family, contrastive_val
from babyvlm.testing import toy_pairs, kill_at, Interrupt

MCFG = ContrastiveConfig(arch='cvcl_vit_tiny', image_size=32)


@pytest.fixture(scope='module')
def data():
    tr, va = toy_pairs(96, seed=1), toy_pairs(32, seed=2)
    return tr, va, build_vocab(tr['text'])


def _cfg(**kw):
    base = dict(max_steps=20, batch_size=16, lr=2e-3, warmup_steps=3, eval_every=5, ckpt_every=5, keep_checkpoints=2,
                val_batch_size=16, progress=False, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def _run(data, out, cfg, hook=None, images=None, model=MCFG):
    tr, va, _ = data
    s = get_family('contrastive').train(ContrastiveParams(model=model, train=cfg, images=images or ImageConfig()), tr, va, out, on_step=hook)
    m, _ = load_contrastive(out)
    return m, s


def _same_weights(a, b, eps=1e-6):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=eps), k


@torch.no_grad()
def _val_loss(model, va, vocab):
    src = ImagePairs(pair_tensors(va, vocab, 32), model.image_size)
    ls = [contrastive_val(**{k: v for k, v in model(*src.batch(torch.arange(i, i + 16))).items()
                            if k in ('image_features', 'text_features', 'logit_scale')})['loss'][0] for i in range(0, len(va) - 15, 16)]
    return sum(ls) / len(ls)


def test_same_seed_same_result(data, tmp_path):
    m1, r1 = _run(data, tmp_path/'a', _cfg(max_steps=10))
    m2, r2 = _run(data, tmp_path/'b', _cfg(max_steps=10))
    _same_weights(m1, m2, eps=0)
    assert r1['best_val_loss'] == r2['best_val_loss']
    assert (tmp_path/'a'/'train_log.jsonl').read_text().count('\n') == 2


def test_streamed_batches_and_workers_change_nothing(data, tmp_path):
    "Images decoded per batch (data too large for memory) in DataLoader worker processes: exactly the in-memory run."
    m1, r1 = _run(data, tmp_path/'a', _cfg(max_steps=10))
    m2, r2 = _run(data, tmp_path/'b', _cfg(max_steps=10, num_workers=2), images=ImageConfig(preload_max_gb=0))
    _same_weights(m1, m2, eps=0)
    assert r1['best_val_loss'] == r2['best_val_loss']
    # killed with one loader, resumed with another: they change speed and memory, not results, so the run continues
    with pytest.raises(Interrupt):
        _run(data, tmp_path/'c', _cfg(max_steps=10, num_workers=1), hook=kill_at(7), images=ImageConfig(preload_max_gb=0))
    m3, r3 = _run(data, tmp_path/'c', _cfg(max_steps=10))
    assert r3['resumed_from'] == 5
    _same_weights(m1, m3)


def test_non_finite_loss_names_the_steps(data, tmp_path):
    "A diverging run stops with an error naming the steps since the loss was last read (no host sync per step)."
    with pytest.raises(FloatingPointError, match=r'steps 1-5; lower the learning rate'):
        _run(data, tmp_path/'nan', _cfg(max_steps=10, lr=1e30, warmup_steps=1))


def test_resume_after_kill_matches_uninterrupted(data, tmp_path):
    m1, r1 = _run(data, tmp_path/'full', _cfg())
    with pytest.raises(Interrupt):
        _run(data, tmp_path/'killed', _cfg(), hook=kill_at(13))
    assert sorted(p.name for p in (tmp_path/'killed'/'contrastive'/'checkpoints').iterdir()) == ['step_10', 'step_5']
    m2, r2 = _run(data, tmp_path/'killed', _cfg())
    assert r2['resumed_from'] == 10
    _same_weights(m1, m2)
    assert (r1['best_step'], r1['steps']) == (r2['best_step'], r2['steps'])
    assert abs(r1['best_val_loss'] - r2['best_val_loss']) < 1e-6
    log1 = [json.loads(l) for l in (tmp_path/'full'/'train_log.jsonl').read_text().splitlines()]
    log2 = [json.loads(l) for l in (tmp_path/'killed'/'train_log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log1] == [r['step'] for r in log2] == [5, 10, 15, 20]
    for a, b in zip(log1, log2): assert abs(a['val_loss'] - b['val_loss']) < 1e-6


def test_training_lowers_val_loss_and_saves_best(data, tmp_path):
    tr, va, vocab = data
    seed_everything(0)
    start = _val_loss(create_contrastive(MCFG, vocab).eval(), va, vocab)
    m, r = _run(data, tmp_path, _cfg(max_steps=40, eval_every=10, ckpt_every=20))
    assert r['best_val_loss'] < start - 0.2
    best, v = load_contrastive(tmp_path)
    assert v == vocab
    assert abs(_val_loss(best, va, vocab) - r['best_val_loss']) < 1e-4    # the saved model is the best one
    assert r['train_samples_per_s'] > 0 and r['n_train'] == 96 and r['selected'] == 'best'
    assert json.loads((tmp_path/'contrastive'/'train_result.json').read_text())['best_step'] == r['best_step']


def test_select_last_keeps_the_last_weights(data, tmp_path):
    m1, r1 = _run(data, tmp_path/'best', _cfg(max_steps=10, eval_every=5))
    m2, r2 = _run(data, tmp_path/'last', _cfg(max_steps=10, eval_every=5, select='last'))
    assert r2['selected'] == 'last'
    if r1['best_step'] != 10:   # (when the best is the last step the two coincide)
        assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_early_stopping(data, tmp_path):
    # min_delta: an improvement must be larger than it, so after the first evaluation (better than none) the validation
    # loss never improves (a learning rate of 0 would do the same, but the parameters refuse it: tests/test_bad_input.py)
    m, r = _run(data, tmp_path, _cfg(max_steps=100, patience=2, eval_every=2, ckpt_every=50, min_delta=100.0))
    assert r['stopped_early'] and r['steps'] == 6 and r['best_step'] == 2
    assert (tmp_path/'contrastive'/'checkpoints'/'step_6').exists()


def test_fixed_temperature_not_trained(data, tmp_path):
    m, r = _run(data, tmp_path, _cfg(max_steps=5))
    assert abs(m.logit_scale.exp().item() - 1/0.07) < 1e-4


def test_changed_settings_are_refused(data, tmp_path):
    _run(data, tmp_path, _cfg(max_steps=5, eval_every=5, ckpt_every=5))
    with pytest.raises(ValueError, match=r'train.lr differ'):
        _run(data, tmp_path, _cfg(max_steps=5, eval_every=5, ckpt_every=5, lr=1e-3))
    with pytest.raises(ValueError, match=r'task.images differ'):
        _run(data, tmp_path, _cfg(max_steps=5, eval_every=5, ckpt_every=5), images=ImageConfig(flip_p=0.0))
    _run(data, tmp_path, _cfg(max_steps=5, eval_every=5, ckpt_every=5, num_workers=1, progress=True))   # harmless keys


def test_bad_inputs(data, tmp_path):
    tr, va, vocab = data
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        get_family('contrastive').train(ContrastiveParams(MCFG, _cfg()), tr.remove_columns('text'), va, tmp_path/'a')
    with pytest.raises(ValueError, match='fewer than one batch'):
        get_family('contrastive').train(ContrastiveParams(MCFG, _cfg()), tr.select(range(8)), va, tmp_path/'b')
    with pytest.raises(ValueError, match="schedule must be 'cosine' or 'constant'"):
        _run(data, tmp_path/'c', _cfg(schedule='linear'))
    with pytest.raises(ValueError, match='unknown arch'):
        create_contrastive(ContrastiveConfig(arch='resnet9000'), vocab)


def test_model_dir_errors(data, tmp_path):
    tr, va, vocab = data
    m = create_contrastive(MCFG, vocab)
    save_contrastive(m, vocab, tmp_path)
    build_vocab(['a quokka']).save(tmp_path/'vocab.json')
    with pytest.raises(ValueError, match='vocab.json has'):
        load_contrastive(tmp_path)
    with pytest.raises(FileNotFoundError, match='model.safetensors'):
        load_contrastive(tmp_path/'nothing')


def test_tokenizer_and_vocab(tmp_path):
    assert tokenize("That's Mommy's ball, isn't it?") == ['that', "'s", 'mommy', "'s", 'ball', ',', 'is', "n't", 'it', '?']
    v = build_vocab(['the quokka', 'a quokka'], min_count=2)
    assert v.itos[-1] == 'quokka' and len(v) == 2351
    ids, lens = v.encode(['the quokka', 'an okapi !', ''])
    assert ids.shape == (3, 3) and lens.tolist() == [2, 3, 1] and ids[1, 1].item() == 1
    assert Vocab.load(v.save(tmp_path/'v.json')) == v
    assert v.count_unknown(['an okapi'])['n_unknown'] == 1


def test_small_images_for_a_larger_model(data, tmp_path):
    "32 px data for a 48 px model: stored at 32 px, crops resized up; validation resizes too."
    m, r = _run(data, tmp_path, _cfg(max_steps=3, eval_every=3, ckpt_every=3), model=ContrastiveConfig(arch='cvcl_vit_tiny', image_size=48))
    assert r['steps'] == 3 and r['best_step'] == 3 and m.image_size == 48
