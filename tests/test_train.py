"Training: determinism, exact resume after a kill, early stopping, checkpoints, bad inputs; the tokenizer and model I/O."
import json
from pathlib import Path
import pytest, torch
from babyvlm.core import seed_everything
from babyvlm.text import build_vocab, tokenize, Vocab
from babyvlm.models.contrastive import ContrastiveConfig, create_contrastive, load_contrastive, save_contrastive
from babyvlm.train import TrainConfig, train_contrastive, validate, pair_tensors
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


def _run(data, out, cfg, hook=None, seed=0):
    tr, va, vocab = data
    seed_everything(seed)
    m = create_contrastive(MCFG, vocab)
    return m, train_contrastive(m, vocab, tr, va, cfg, out, on_step=hook)


def _same_weights(a, b, eps=1e-6):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=eps), k


def test_same_seed_same_result(data, tmp_path):
    m1, r1 = _run(data, tmp_path/'a', _cfg(max_steps=10))
    m2, r2 = _run(data, tmp_path/'b', _cfg(max_steps=10))
    _same_weights(m1, m2, eps=0)
    assert r1.best_val_loss == r2.best_val_loss
    assert (tmp_path/'a'/'train_log.jsonl').read_text().count('\n') == 2


def test_streamed_batches_and_workers_change_nothing(data, tmp_path):
    "Images decoded per batch (data too large for memory) in DataLoader worker processes: exactly the in-memory run."
    m1, r1 = _run(data, tmp_path/'a', _cfg(max_steps=10))
    m2, r2 = _run(data, tmp_path/'b', _cfg(max_steps=10, preload_max_gb=0, num_workers=2))
    _same_weights(m1, m2, eps=0)
    assert r1.best_val_loss == r2.best_val_loss
    # killed with one loader, resumed with another: they change speed and memory, not results, so the run continues
    with pytest.raises(Interrupt): _run(data, tmp_path/'c', _cfg(max_steps=10, preload_max_gb=0, num_workers=1), hook=kill_at(7))
    m3, r3 = _run(data, tmp_path/'c', _cfg(max_steps=10))
    assert r3.resumed_from == 5
    _same_weights(m1, m3)


def test_non_finite_loss_names_the_steps(data, tmp_path):
    "A diverging run stops with an error naming the steps since the loss was last read (no host sync per step)."
    with pytest.raises(FloatingPointError, match=r'steps 1-5; lower the learning rate'):
        _run(data, tmp_path/'nan', _cfg(max_steps=10, lr=float('inf'), warmup_steps=1))


def test_resume_after_kill_matches_uninterrupted(data, tmp_path):
    m1, r1 = _run(data, tmp_path/'full', _cfg())
    with pytest.raises(Interrupt):
        _run(data, tmp_path/'killed', _cfg(), hook=kill_at(13))
    assert sorted(p.name for p in (tmp_path/'killed'/'checkpoints').iterdir()) == ['step_10', 'step_5']
    m2, r2 = _run(data, tmp_path/'killed', _cfg())
    assert r2.resumed_from == 10
    _same_weights(m1, m2)
    assert (r1.best_step, r1.steps) == (r2.best_step, r2.steps)
    assert abs(r1.best_val_loss - r2.best_val_loss) < 1e-6
    log1 = [json.loads(l) for l in (tmp_path/'full'/'train_log.jsonl').read_text().splitlines()]
    log2 = [json.loads(l) for l in (tmp_path/'killed'/'train_log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log1] == [r['step'] for r in log2] == [5, 10, 15, 20]
    for a, b in zip(log1, log2): assert abs(a['val_loss'] - b['val_loss']) < 1e-6
    # the reloaded best model is the same in both runs
    b1, _ = load_contrastive(tmp_path/'full'); b2, _ = load_contrastive(tmp_path/'killed')
    _same_weights(b1, b2)


def test_training_lowers_val_loss_and_saves_best(data, tmp_path):
    tr, va, vocab = data
    seed_everything(0)
    start = validate(create_contrastive(MCFG, vocab), pair_tensors(va, vocab, 32), 16)['val_loss']
    m, r = _run(data, tmp_path, _cfg(max_steps=40, eval_every=10, ckpt_every=20))
    assert r.best_val_loss < start - 0.2
    best, v = load_contrastive(tmp_path)
    assert v == vocab
    again = validate(best, pair_tensors(va, vocab, 32), 16)['val_loss']
    assert abs(again - r.best_val_loss) < 1e-4
    assert r.train_samples_per_s > 0 and r.n_train == 96
    assert json.loads((tmp_path/'train_result.json').read_text())['best_step'] == r.best_step


def test_early_stopping(data, tmp_path):
    # lr=0: the validation loss never improves after the first evaluation
    m, r = _run(data, tmp_path, _cfg(max_steps=100, lr=0.0, patience=2, eval_every=2, ckpt_every=50))
    assert r.stopped_early and r.steps == 6 and r.best_step == 2
    assert (tmp_path/'checkpoints'/'step_6').exists()


def test_fixed_temperature_not_trained(data, tmp_path):
    m, r = _run(data, tmp_path, _cfg(max_steps=5))
    assert abs(m.logit_scale.exp().item() - 1/0.07) < 1e-4


def test_bad_inputs(data, tmp_path):
    tr, va, vocab = data
    m = create_contrastive(MCFG, vocab)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        train_contrastive(m, vocab, tr.remove_columns('text'), va, _cfg(), tmp_path/'a')
    with pytest.raises(ValueError, match='fewer than one batch'):
        train_contrastive(m, vocab, tr.select(range(8)), va, _cfg(), tmp_path/'b')
    with pytest.raises(ValueError, match="schedule must be 'cosine' or 'constant'"):
        train_contrastive(m, vocab, tr, va, _cfg(schedule='linear'), tmp_path/'c')
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
    tr, va, vocab = data
    seed_everything(0)
    m = create_contrastive(ContrastiveConfig(arch='cvcl_vit_tiny', image_size=48), vocab)
    r = train_contrastive(m, vocab, tr, va, _cfg(max_steps=3, eval_every=3, ckpt_every=3), tmp_path)
    assert r.steps == 3 and r.best_step == 3
