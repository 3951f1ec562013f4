"Evaluation: batch-size invariance of scores, the Labeled-S rules (ties wrong), bootstrap intervals, result files."
import json
import numpy as np, pytest
from babyvlm.core import seed_everything
from babyvlm.text import build_vocab
from babyvlm.benchmarks import LabeledSTrial
from babyvlm.models.contrastive import ContrastiveConfig, create_contrastive, image_preprocess
from babyvlm.testing import toy_pairs, toy_image, TOY_SHAPES, TOY_COLOURS
from babyvlm.evaluate import ContrastiveScorer, EvalConfig, evaluate_labeled_s, bootstrap_ci, write_results, evaluate


@pytest.fixture(scope='module')
def setup():
    seed_everything(0)
    ds = toy_pairs(24, seed=3)
    vocab = build_vocab(ds['text'])
    model = create_contrastive(ContrastiveConfig(image_size=32), vocab)
    return ds, vocab, model


def _trials(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cats = [str(c) for c in rng.permutation(TOY_SHAPES)]; t = int(rng.integers(4))
        ims = [toy_image(c, 'red', rng, 32) for c in cats]
        out.append(LabeledSTrial(trial_id=str(i), target_category=cats[t], images=ims, categories=cats, target=t))
    return out


def test_scores_do_not_depend_on_batch_size(setup):
    ds, vocab, model = setup
    ims, txts = ds['image'], ds['text']
    big = ContrastiveScorer(model, vocab, image_preprocess(model), batch_size=64).score(ims, txts)
    one = ContrastiveScorer(model, vocab, image_preprocess(model), batch_size=1).score(ims, txts)
    odd = ContrastiveScorer(model, vocab, image_preprocess(model), batch_size=5).score(ims, txts)
    assert np.allclose(big, one, atol=1e-5) and np.allclose(big, odd, atol=1e-5)
    # a short text next to a long one in the same batch (padding) scores as it does alone
    alone = ContrastiveScorer(model, vocab, image_preprocess(model)).score(ims[:1], ['ball'])
    mixed = ContrastiveScorer(model, vocab, image_preprocess(model)).score(ims[:2], ['ball', 'look at the big red ball over there'])
    assert abs(alone[0] - mixed[0]) < 1e-5


def test_labeled_s_with_real_trials(setup, tmp_path):
    ds, vocab, model = setup
    trials = _trials(12)
    sc = ContrastiveScorer(model, vocab, image_preprocess(model))
    m, p = evaluate_labeled_s(sc, trials, EvalConfig(n_boot=200))
    assert m['n_trials'] == 12 and m['chance'] == 0.25 and len(p) == 12
    assert m['ci_low'] <= m['accuracy'] <= m['ci_high']
    assert m['n_correct'] == sum(x['correct'] for x in p)
    for x, t in zip(p, trials):
        assert x['correct'] == (x['chosen'] == t.target and not x['tie'])
        assert len(x['scores']) == 4 and x['categories'] == t.categories
    mp, pp = write_results(tmp_path, m, p)
    assert json.loads(mp.read_text())['n_trials'] == 12
    assert len(pp.read_text().splitlines()) == 12
    assert list(json.loads(mp.read_text())) == sorted(json.loads(mp.read_text()))
    r = evaluate(model, vocab, {'labeled_s': trials}, EvalConfig(n_boot=200), out_dir=tmp_path/'e')
    assert r['labeled_s'] == m


def test_ties_count_as_wrong():
    class Const:
        def score(self, images, texts): return np.ones(len(images))
    m, p = evaluate_labeled_s(Const(), _trials(8), EvalConfig(n_boot=100))
    assert m['accuracy'] == 0.0 and m['n_ties'] == 8


def test_perfect_and_bad_scorers():
    trials = _trials(8)
    class Oracle:  # knows which image is the target by its category
        def __init__(self, trials): self.cats = [c for t in trials for c in t.categories]
        def score(self, images, texts): return np.array([float(c == t) for c, t in zip(self.cats, texts)])
    m, _ = evaluate_labeled_s(Oracle(trials), trials)
    assert m['accuracy'] == 1.0 and m['ci_low'] == 1.0
    class Wrong:
        def score(self, images, texts): return np.zeros(3)
    with pytest.raises(ValueError, match='scorer returned shape'):
        evaluate_labeled_s(Wrong(), trials)
    with pytest.raises(ValueError, match='no trials'):
        evaluate_labeled_s(Wrong(), [])


def test_bootstrap():
    a = bootstrap_ci([1, 0] * 50, n_boot=2000, seed=1)
    assert a == bootstrap_ci([1, 0] * 50, n_boot=2000, seed=1)
    assert a[0] < 0.5 < a[1] and 0.1 < a[1] - a[0] < 0.3
    with pytest.raises(ValueError, match='ci must be'):
        bootstrap_ci([1, 0], ci=95)
