"The paper's scoring rules: VTWT, Baby Winoground (with chance levels), METEOR offline, batch-size independence."
import itertools
from fractions import Fraction
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from babyvlm import assets
from babyvlm.benchmarks import BABYLMMS_FILES, CaptionItem, VTWTItem, WinogroundItem
from babyvlm.assets import load_wordnet, wordnet_dir
from babyvlm.evaluate import (BENCHMARKS, GENERATIVE_BENCHMARKS, WINOGROUND_CHANCE, ContrastiveScorer, EvalConfig, evaluate,
                              evaluate_captioning, evaluate_items, evaluate_vtwt, evaluate_winoground, meteor, meteor_tokens,
                              tokens_may_differ, winoground_outcomes)


@pytest.fixture(scope='module')
def wn(): return load_wordnet(fetch=True)


# ---------------------------------------------------------------- METEOR
def test_meteor_hand_checked(wn):
    # exact matches only: m=5, P=1, R=5/6, F = PR/(0.9P+0.1R) = 50/59; 2 chunks: penalty 0.5*(2/5)^3 = 0.032
    assert meteor(["the cat sat on the mat"], "the cat on the mat", wn) == pytest.approx(0.968 * 50 / 59, abs=1e-12)
    # identical caption of m words: one chunk, 1 - 0.5/m^3
    assert meteor(["look at the ball"], "look at the ball", wn) == 1 - 0.5 / 64
    assert meteor(["there 's a girl blowing bubbles ."], "there 's a girl blowing bubbles .", wn) == pytest.approx(1 - 0.5 / 7**3)
    # case is ignored (nltk lower-cases), stems match ("balls" ~ "ball")
    assert meteor(["Look at the BALL"], "look at the balls", wn) == 1 - 0.5 / 64
    # a WordNet synonym ("kid" is a lemma of child.n.01): 4 matches, one chunk
    assert meteor(["look at the child"], "look at the kid", wn) == 1 - 0.5 / 64
    # nothing in common, or nothing generated
    assert meteor(["this is a cat"], "non matching hypothesis", wn) == 0.0
    assert meteor(["look at the ball"], "", wn) == 0.0


def test_meteor_several_references_takes_the_best(wn):
    assert meteor(["no way", "look at the ball"], "look at the ball", wn) == meteor(["look at the ball"], "look at the ball", wn)


def test_meteor_matches_nltk_call(wn):
    "The same number as nltk's meteor_score on word_tokenize(.., preserve_line=True) tokens with this WordNet."
    from nltk.translate.meteor_score import meteor_score
    from nltk.tokenize import word_tokenize
    for ref, hyp in [("who 's behind grumpy robot ?", "who is that robot ?"), ("crayons and cherries .", "cherry crayon !")]:
        want = meteor_score([word_tokenize(ref, preserve_line=True)], word_tokenize(hyp, preserve_line=True), wordnet=wn)
        assert meteor([ref], hyp, wn) == want


def test_tokens_equal_word_tokenize_per_sentence():
    from nltk.tokenize import word_tokenize
    from nltk.tokenize.punkt import PunktSentenceTokenizer
    split = PunktSentenceTokenizer()   # no model: splits at every candidate sentence end
    for t in ["hi . look at the ball ! is it red ? yes it is .", "we're going, aren't we?", "can't you see? wow! ok.",
              "okay well , you want to read the farm book again , okay ,", '" she said they shoud blow bubbles . "']:
        assert not tokens_may_differ(t)
        assert meteor_tokens(t) == word_tokenize(t, preserve_line=True) == [w for s in split.tokenize(t) for w in meteor_tokens(s)]
    assert meteor_tokens("we're going, aren't we?") == ['we', "'re", 'going', ',', 'are', "n't", 'we', '?']
    assert [tokens_may_differ(t) for t in ["look. a dog", "mr. smith", 'said "no." ok', "wait... what", "the end."]] == \
        [True, True, True, False, False]


def test_word_tokenize_really_needs_punkt():
    from nltk.tokenize import word_tokenize
    try: word_tokenize("look at the ball .")
    except LookupError as e: assert 'punkt_tab' in str(e)
    else: pytest.skip('punkt_tab is installed on this machine')


def test_wordnet_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delitem(assets.PACKS, 'wordnet-base', raising=False)
    with pytest.raises(FileNotFoundError, match=r"asset pack 'wordnet-base'.*not in `babyvlm.assets.PACKS` yet.*1:3.0-37"):
        wordnet_dir(tmp_path)
    monkeypatch.setitem(assets.PACKS, 'wordnet-base', assets.Pack('wordnet-base', 'debian', 'wordnet-base', '1:3.0-37',
                                                                  '0'*64, 'x', 'x', 'x'))
    with pytest.raises(FileNotFoundError, match=r"fetch it with `babyvlm.assets.fetch_pack"):
        wordnet_dir(tmp_path)


def test_wordnet_is_3_0(wn):
    assert wn.get_version() == '3.0'
    assert wn.synset('dog.n.01').lexname() == 'noun.animal'
    assert {'child', 'kid'} <= {l.name() for s in wn.synsets('kid') for l in s.lemmas()}


# ---------------------------------------------------------------- Baby Winoground
def test_winoground_rules_and_exact_chance():
    "Over all 24 orderings of four distinct scores (all equally likely under random scores) each rule holds with its chance."
    hits = {k: 0 for k in WINOGROUND_CHANCE}
    perms = list(itertools.permutations(range(4)))
    out = winoground_outcomes(np.array(perms, dtype=float).reshape(-1, 2, 2))
    for k, v in out.items(): assert Fraction(int(v.sum()), len(perms)) == Fraction(WINOGROUND_CHANCE[k]).limit_denominator(10)
    assert WINOGROUND_CHANCE == dict(text=1/4, image=1/4, group=1/6, positive_context=1/3, negative_context=1/3)


def test_winoground_ties_are_wrong_and_group_is_text_and_image():
    o = winoground_outcomes([[[1, 1], [1, 1]], [[2, 1], [2, 3]], [[3, 0], [1, 2]]])
    assert not any(v[0] for v in o.values())                        # all equal: nothing right
    assert list(o['text'][1:]) == [True, True] and list(o['image'][1:]) == [False, True]
    assert list(o['group']) == list(o['text'] & o['image'])
    assert list(o['positive_context'][1:]) == [False, True] and list(o['negative_context'][1:]) == [True, True]
    with pytest.raises(ValueError, match='expected shape'): winoground_outcomes(np.zeros((3, 4)))


class Fixed:
    "Returns preset scores (whatever their number: the evaluators check the shape)."
    def __init__(self, flat): self.flat = np.asarray(flat, dtype=float)
    def score(self, images, texts):
        assert len(images) == len(texts)
        return self.flat


def _img(k): return Image.new('RGB', (8, 8), (k, 0, 0))


def test_evaluate_winoground_pair_order_and_metrics():
    items = [WinogroundItem(str(i), [_img(i), _img(100 + i)], [f"a{i} b", f"c{i} d"]) for i in range(2)]
    seen = []
    class Spy:
        def score(self, images, texts):
            seen.extend(zip([im.getpixel((0, 0))[0] for im in images], texts))
            return np.array([2, 1, 0, 3, 2, 1, 3, 0], dtype=float)
    m, p = evaluate_winoground(Spy(), items, EvalConfig(n_boot=50))
    assert seen[:4] == [(0, 'a0 b'), (0, 'c0 d'), (100, 'a0 b'), (100, 'c0 d')]   # S00, S01, S10, S11
    assert [m[k]['accuracy'] for k in WINOGROUND_CHANCE] == [0.5, 0.5, 0.5, 0.5, 0.5]
    assert m['accuracy'] == m['group']['accuracy'] and m['chance'] == 1/6 and m['headline'] == 'group'
    assert p[1]['scores'] == [[2.0, 1.0], [3.0, 0.0]] and p[1]['text'] is False and p[0]['group'] is True
    nan = evaluate_winoground(Fixed([np.nan, 1, 0, 3, 2, 1, 0, 3]), items, EvalConfig(n_boot=50))[0]
    assert nan['n_nonfinite'] == 1 and nan['group']['accuracy'] == 0.5
    with pytest.raises(ValueError, match='scorer returned shape'): evaluate_winoground(Fixed([1, 2]), items)


# ---------------------------------------------------------------- VTWT
def test_evaluate_vtwt_rules_and_breakdowns():
    items = [VTWTItem('0', _img(0), 'read book', 'eat book', word_class='verb'),
             VTWTItem('1', _img(1), 'red cup', 'red hat', word_class='noun'),
             VTWTItem('2', _img(2), 'hug hippo', 'kick ball'),
             VTWTItem('3', _img(3), 'big bush', 'small bush', word_class='adjective')]
    m, p = evaluate_vtwt(Fixed([1, 0, 0, 1, 2, 2, 0.5, 0.25]), items, EvalConfig(n_boot=50))
    assert [x['correct'] for x in p] == [True, False, False, True] and m['accuracy'] == 0.5
    assert m['n_ties'] == 1 and m['chance'] == 0.5
    assert {k: (v['accuracy'], v['n']) for k, v in m['per_kind'].items()} == {'first': (1.0, 2), 'second': (0.0, 1), 'both': (0.0, 1)}
    assert list(m['per_kind']) == ['first', 'second', 'both']
    assert {k: v['accuracy'] for k, v in m['per_word_class'].items()} == {'adjective': 1.0, 'noun': 0.0, 'verb': 1.0}
    assert m['n_without_word_class'] == 1
    with pytest.raises(ValueError, match='no items'): evaluate_vtwt(Fixed([]), [])


# ---------------------------------------------------------------- batch size
@pytest.fixture(scope='module')
def tiny_model():
    from babyvlm.core import seed_everything
    from babyvlm.text import build_vocab
    from babyvlm.models.contrastive import ContrastiveConfig, create_contrastive, image_preprocess
    seed_everything(0)
    vocab = build_vocab(["read book eat red cup hat hug hippo kick ball big bush small a b c d"])
    model = create_contrastive(ContrastiveConfig(image_size=32), vocab)
    return model, vocab, image_preprocess(model)


def test_scores_do_not_depend_on_batch_size(tiny_model):
    model, vocab, pre = tiny_model
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(14)]
    words = ['read book', 'eat book', 'red cup', 'red hat', 'hug hippo', 'kick ball', 'big bush', 'small bush']
    vt = [VTWTItem(str(i), ims[i], words[(2*i) % 8], words[(2*i + 1) % 8]) for i in range(7)]
    wt = [WinogroundItem(str(i), [ims[7 + i], ims[(8 + i) % 14]], [words[i % 8], words[(i + 3) % 8]]) for i in range(7)]
    cfg = EvalConfig(n_boot=100)
    ref = ContrastiveScorer(model, vocab, pre, batch_size=64)
    for bs in (1, 3):
        sc = ContrastiveScorer(model, vocab, pre, batch_size=bs)
        a, b = evaluate_vtwt(ref, vt, cfg), evaluate_vtwt(sc, vt, cfg)
        assert a[0] == b[0]
        assert np.allclose([x['score_positive'] for x in a[1]], [x['score_positive'] for x in b[1]], atol=1e-6)
        assert evaluate_winoground(ref, wt, cfg)[0] == evaluate_winoground(sc, wt, cfg)[0]


@pytest.fixture(scope='module')
def generative_scorers():
    "Untrained tiny BabyLLaVA and CoCa models: their likelihood scorers, CoCa's cosine scorer, their captioners, by batch size."
    from babyvlm.core import seed_everything
    from babyvlm.text import build_tokenizer
    from babyvlm.models.vision import vision_from_spec
    from babyvlm.models.generative import GenerativeConfig, create_generative
    from babyvlm.models.hybrid import CoCaConfig, create_coca
    from babyvlm.families import Loaded, get_family
    from babyvlm.evaluate import GenerativeScorer, CoCaScorer
    tok = build_tokenizer(["read book eat red cup hat hug hippo kick ball big bush small a b c d"])
    seed_everything(0)
    g = create_generative(GenerativeConfig(n_embd=32, n_layer=1, n_head=2, n_inner=64, dropout=0.0),
                          vision_from_spec(dict(kind='cnn', widths=[8, 16], image_size=32, grid=2, mean=[0.5] * 3, std=[0.25] * 3)), tok)
    c = create_coca(CoCaConfig(image_size=32), tok)
    lc = Loaded('hybrid', c, tok, Path('.'))
    return {'generative': lambda bs: GenerativeScorer(g, tok, batch_size=bs), 'coca': lambda bs: CoCaScorer(c, tok, batch_size=bs),
            'coca_cosine': lambda bs: get_family('hybrid').scorer(lc, bs)}


@pytest.mark.parametrize('kind', ['generative', 'coca', 'coca_cosine'])
def test_generative_scores_do_not_depend_on_batch_size(generative_scorers, kind):
    "Likelihood scorers (padded batches with masks) and CoCa's cosine give every benchmark the same outcome at any batch size."
    make = generative_scorers[kind]
    rng = np.random.default_rng(1)
    ims = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(14)]
    words = ['read book', 'eat book', 'red cup', 'red hat', 'hug hippo', 'kick ball', 'big bush', 'small bush', 'a b c d ball']
    vt = [VTWTItem(str(i), ims[i], words[(2*i) % 9], words[(2*i + 1) % 9]) for i in range(7)]
    wt = [WinogroundItem(str(i), [ims[7 + i], ims[(8 + i) % 14]], [words[i % 9], words[(i + 3) % 9]]) for i in range(7)]
    cfg = EvalConfig(n_boot=100)
    ref = make(64)
    a, wa = evaluate_vtwt(ref, vt, cfg), evaluate_winoground(ref, wt, cfg)
    assert np.std([x['score_positive'] for x in a[1]]) > 0   # the scores are not all equal
    for bs in (1, 3):
        sc = make(bs)
        b, wb = evaluate_vtwt(sc, vt, cfg), evaluate_winoground(sc, wt, cfg)
        assert a[0] == b[0] and wa[0] == wb[0]
        np.testing.assert_allclose([x['score_positive'] for x in a[1]], [x['score_positive'] for x in b[1]], atol=1e-5, rtol=0)
        np.testing.assert_allclose([x['scores'] for x in wa[1]], [x['scores'] for x in wb[1]], atol=1e-5, rtol=0)
    if kind != 'coca_cosine':   # greedy captions: the same at any batch size, and METEOR with them
        caps = [CaptionItem(str(i), ims[i], [words[i % 9]]) for i in range(5)]
        runs = [evaluate_items(None, {'saycam_caption': caps}, EvalConfig(n_boot=20, batch_size=bs),
                               generate_fn=lambda x, bs=bs: make(bs).generate(x, max_new_tokens=6))[1]['saycam_caption']
                for bs in (1, 2, 8)]
        assert [p['prediction'] for p in runs[0]] == [p['prediction'] for p in runs[1]] == [p['prediction'] for p in runs[2]]


# ---------------------------------------------------------------- captioning
def test_evaluate_captioning(wn):
    items = [CaptionItem(str(i), _img(i), [r]) for i, r in
             enumerate(["look at the ball .", "there are ten doggies .", "who 's behind grumpy robot ?", "crayons and cherries ."])]
    calls = []
    def gen(images):
        calls.append(len(images))
        return ["look at the ball ." if im.getpixel((0, 0))[0] % 2 == 0 else "" for im in images]
    m1, p1 = evaluate_captioning(gen, items, EvalConfig(batch_size=1, n_boot=50), wordnet=wn)
    m3, _ = evaluate_captioning(gen, items, EvalConfig(batch_size=3, n_boot=50), wordnet=wn)
    assert m1 == m3 and calls == [1, 1, 1, 1, 3, 1]
    assert [x['meteor'] for x in p1] == [meteor([it.references[0]], x['prediction'], wn) for it, x in zip(items, p1)]
    assert p1[0]['meteor'] == 1 - 0.5 / 5**3 and p1[1]['meteor'] == 0.0
    assert m1['n_empty_predictions'] == 2 and m1['meteor'] == pytest.approx(np.mean([x['meteor'] for x in p1]))
    with pytest.raises(ValueError, match='returned 1 value'):
        evaluate_captioning(lambda ims: ['x'], items, EvalConfig(batch_size=2), wordnet=wn)
    with pytest.raises(ValueError, match='one str per image'):
        evaluate_captioning(lambda ims: [None] * len(ims), items, wordnet=wn)


# ---------------------------------------------------------------- registry
def test_registry_covers_the_four_benchmarks():
    assert set(BENCHMARKS) == set(BABYLMMS_FILES) | {'real_photos'} and GENERATIVE_BENCHMARKS == {'saycam_caption'}
    with pytest.raises(ValueError, match='need\\(s\\) a caption generator'):
        evaluate(None, None, {'saycam_caption': []})
    with pytest.raises(ValueError, match='need\\(s\\) a caption generator'):
        evaluate_items(Fixed([]), {'saycam_caption': []})
    with pytest.raises(ValueError, match='the choice benchmarks need a scorer'):
        evaluate_items(None, {'vtwt': []}, generate_fn=lambda ims: [])
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['winoground'\]"):
        evaluate_items(Fixed([]), {'winoground': []})
