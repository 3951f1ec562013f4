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


def test_the_family_scorer_is_the_contrastive_scorer(setup, tmp_path):
    "A run folder scored through the registry gives the scores of `ContrastiveScorer` on the model it holds, at any batch size."
    from babyvlm.models.contrastive import save_contrastive
    from babyvlm.families import get_family, detect_family
    ds, vocab, model = setup
    save_contrastive(model, vocab, tmp_path/'run')
    fam = detect_family(tmp_path/'run'); loaded = fam.load(tmp_path/'run')
    assert fam.name == 'contrastive' and loaded.tokenizer == vocab
    ims, txts = ds['image'], ds['text']
    ref = ContrastiveScorer(model, vocab, image_preprocess(model), batch_size=64).score(ims, txts)
    for bs in (7, 64): np.testing.assert_allclose(fam.scorer(loaded, bs).score(ims, txts), ref, atol=1e-5, rtol=0)


def test_controls_and_score_run(setup, tmp_path):
    "The blind controls ignore the image; `score_run` scores every benchmark and the controls of the blind ones."
    from types import SimpleNamespace
    from babyvlm.models.contrastive import save_contrastive
    from babyvlm.families import get_family, score_run, BLIND_BENCHMARKS
    from babyvlm.evaluate import BlankImageScorer, TextPriorScorer, retrieval_captioner, frequent_captioner
    from babyvlm.benchmarks import CaptionItem
    ds, vocab, model = setup
    ims, txts = ds['image'][:8], ds['text'][:8]
    sc = ContrastiveScorer(model, vocab, image_preprocess(model))
    blank = BlankImageScorer(sc, 32)
    np.testing.assert_allclose(blank.score(ims, txts), blank.score(ims[::-1], txts), atol=1e-6, rtol=0)
    np.testing.assert_allclose(blank.score(ims, txts), sc.score([blank.blank] * 8, txts), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='this model cannot caption'): blank.generate(ims)
    prior = TextPriorScorer(ds['text'])
    assert np.array_equal(prior.score([None] * 8, txts), prior.score(ims, txts))   # images never touched
    assert prior.logprob('') == float('-inf') and prior.logprob(txts[0]) > prior.logprob('zebra quantum')
    assert frequent_captioner(['b', 'a', 'b', 'a', 'c'])([None] * 3) == ['a'] * 3       # ties: the first in order
    cands = sorted(set(ds['text']))
    caps = retrieval_captioner(sc, cands)(ims)
    assert caps == retrieval_captioner(ContrastiveScorer(model, vocab, image_preprocess(model), batch_size=3), cands)(ims)
    assert all(c in cands for c in caps)
    with pytest.raises(ValueError, match='no candidate utterances'): retrieval_captioner(sc, [])
    # score_run on a run folder: every benchmark, and the blind and text-prior controls of the blind benchmarks only
    save_contrastive(model, vocab, tmp_path/'run')
    loaded = get_family('contrastive').load(tmp_path/'run')
    vt = [SimpleNamespace(item_id=str(i), image=ims[i], positive=txts[i], negative=txts[(i + 3) % 8]) for i in range(8)]
    items = {'labeled_s': _trials(4), 'vtwt': vt, 'saycam_caption': [CaptionItem(str(i), ims[i], [txts[i]]) for i in range(4)]}
    res, preds, ctl = score_run(loaded, items, EvalConfig(n_boot=20, batch_size=3), candidates=ds['text'], out_dir=tmp_path/'out')
    assert list(res) == list(items) and res['labeled_s']['n_trials'] == 4 and res['vtwt']['n_items'] == 8
    assert [p['prediction'] for p in preds['saycam_caption']] == caps[:4]   # retrieval over the candidates
    assert sorted(ctl) == ['blind', 'text_prior'] and set(ctl['blind']) == set(ctl['text_prior']) == {'vtwt', 'saycam_caption'}
    assert set(BLIND_BENCHMARKS) >= set(ctl['blind'])
    assert {p.name for p in (tmp_path/'out').iterdir()} == {'controls'} | {f'{n}_{k}' for n in items for k in ('metrics.json', 'predictions.jsonl')}
    for c in ('blind', 'text_prior'):   # the controls' per-item predictions too (paired comparisons, babyvlm.claims)
        assert {p.name for p in (tmp_path/'out'/'controls'/c).iterdir()} == {f'{n}_{k}' for n in ctl[c] for k in ('metrics.json', 'predictions.jsonl')}
    again, _, ctl2 = score_run(loaded, items, EvalConfig(n_boot=20, batch_size=64), candidates=ds['text'])
    assert again == res and ctl2 == ctl
    assert score_run(loaded, items, EvalConfig(n_boot=20), candidates=ds['text'], controls=False)[2] == {}
