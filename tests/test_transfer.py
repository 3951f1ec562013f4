"""Transfer pipeline (babyvlm.transfer, babyvlm.matching): filtering, rewriting backends (rules / OpenAI-compatible / local LM)
with faults and resume, relevance, matching, the whole pipeline."""
import collections, itertools, json, os
from pathlib import Path
import numpy as np, pytest, torch
import datasets
from PIL import Image
from babyvlm.core import ParamsError
from babyvlm.transfer import (OpenAIBackend, HFBackend, RulesBackend, JsonlCache, load_prompts, rewrite_captions, relevance_filter,
                              filter_pairs, random_baseline, transfer_stats, sentence_form, dataset_fingerprint, TransferConfig,
                              step_dir, ReferenceScorer, scorer_key)
from babyvlm.matching import match_distribution, knn_topk, matching_gap, build_transferred, EffNetEmbedder, embed_images
from babyvlm.testing import FakeChatServer, fake_reply, tiny_causal_lm, clustered_embeddings

torch.set_num_threads(1)
KEY_ENV, KEY = 'BABYVLM_TEST_KEY', 'sk-test-SECRET-7f3a9c-never-store'
FEATS = datasets.Features(image=datasets.Image(), text=datasets.Value('string'), aligned=datasets.Value('bool'))


@pytest.fixture(autouse=True)
def _key(monkeypatch): monkeypatch.setenv(KEY_ENV, KEY)


def pairs(texts, aligned=None):
    ims = [Image.new('RGB', (8, 8), (i*37 % 256, i*11 % 256, 0)) for i in range(len(texts))]
    return datasets.Dataset.from_dict(dict(image=ims, text=list(texts), aligned=aligned or [True]*len(texts)), features=FEATS)


def backend(srv, tmp_path, **kw):
    kw = {**dict(max_concurrency=4, base_delay=0.005, max_delay=0.05, max_retries=8, timeout=0.3,
                 cache_file=tmp_path/'llm.jsonl'), **kw}
    return OpenAIBackend('fake-model', srv.base_url, api_key_env=KEY_ENV, **kw)


CAPS = [f"a studio shot of a {c} {n}" for c in ('red', 'blue', 'green', 'white', 'black') for n in ('ball', 'dog', 'cup', 'car')]


# ---- openai backend against the local fake endpoint ----------------------------------------------------------------

def test_faults_nothing_lost_or_duplicated(tmp_path):
    plan = ['429', None, '500', 'timeout', None, 'malformed', '503', 'empty', None, 'no_choices', '429', None]
    with FakeChatServer(faults=lambda i, b: plan[i] if i < len(plan) else ('429' if i % 5 == 0 else None), timeout_sleep=0.6) as srv:
        be = backend(srv, tmp_path)
        out, rep = be.rewrite_many(CAPS + CAPS[:5])          # duplicates: requested once
    assert out == [fake_reply([{'role': 'user', 'content': f'Caption: {c}'}]) for c in CAPS + CAPS[:5]]
    assert (rep['n_unique'], rep['n_requested'], rep['n_failed']) == (20, 20, 0)
    for kind in ('rate_limit', 'server', 'timeout', 'malformed'): assert rep['errors'].get(kind, 0) >= 1, rep['errors']
    lines = [json.loads(l) for l in (tmp_path/'llm.jsonl').read_text().splitlines()]
    assert len(lines) == 20 and len({l['key'] for l in lines}) == 20 and sorted(l['input'] for l in lines) == sorted(CAPS)
    ok_requests = collections.Counter(c for c, f in zip(srv.captions(), [srv.faults(i, None) for i in range(srv.n)]) if f is None)
    assert set(ok_requests) == set(CAPS)


def test_resume_requests_only_what_is_missing(tmp_path):
    bad = set(CAPS[::3])
    with FakeChatServer(faults=lambda i, b: '500' if any(c in json.dumps(b) for c in bad) else None) as srv:
        ds, rep = rewrite_captions(pairs(CAPS), 'openai', model='fake-model', base_url=srv.base_url, api_key_env=KEY_ENV,
                                   max_retries=1, base_delay=0.001, cache_file=tmp_path/'llm.jsonl', cache=tmp_path)
    assert (rep['n_failed'], len(ds)) == (len(bad), len(CAPS) - len(bad)) and not set(ds['original_text']) & bad
    assert rep['requests']['errors']['server'] == 2*len(bad)           # one try + one retry each
    assert len((tmp_path/'llm.jsonl').read_text().splitlines()) == len(CAPS) - len(bad)
    with open(tmp_path/'llm.jsonl', 'a') as f: f.write('{"key": "trunc')   # a crash mid-write
    with FakeChatServer() as srv:
        ds2, rep2 = rewrite_captions(pairs(CAPS), 'openai', model='fake-model', base_url=srv.base_url, api_key_env=KEY_ENV,
                                     cache_file=tmp_path/'llm.jsonl', cache=tmp_path)
        assert sorted(srv.captions()) == sorted(bad)                   # only the missing ones
    assert (rep2['n_failed'], len(ds2), rep2['requests']['corrupt_cache_lines']) == (0, len(CAPS), 1)
    assert list(ds2['original_text']) == CAPS
    with FakeChatServer() as srv:
        ds3, rep3 = rewrite_captions(pairs(CAPS), 'openai', model='fake-model', base_url=srv.base_url, api_key_env=KEY_ENV,
                                     cache_file=tmp_path/'llm.jsonl', cache=tmp_path)
        assert srv.n == 0 and rep3['cached'] and list(ds3['text']) == list(ds2['text'])


def test_fatal_errors_are_not_retried(tmp_path):
    with FakeChatServer(faults=lambda i, b: '401') as srv:
        out, rep = backend(srv, tmp_path).rewrite_many(CAPS[:3])
    assert out == [None]*3 and srv.n == 3 and rep['n_failed'] == 3 and rep['errors'] == {'fatal': 3}
    assert 'fatal' in rep['first_errors'][0]


def test_api_key_never_written(tmp_path):
    with FakeChatServer() as srv:
        kw = dict(model='fake-model', base_url=srv.base_url, api_key_env=KEY_ENV, cache_file=tmp_path/'c'/'llm.jsonl', cache=tmp_path)
        ds, r1 = rewrite_captions(pairs(CAPS[:6] + ['a photo of a bridge']), 'openai', **kw)
        kept, r2 = relevance_filter(ds, 'openai', **kw)
        assert srv.auth_seen == srv.n > 0                              # the key was sent...
    assert len(kept) == 6 and r2['n_dropped'] == 1                    # (the fake says no to bridges)
    blobs = [p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()] + [json.dumps([r1, r2]).encode()]
    assert not any(KEY.encode() in b for b in blobs)                   # ...and never written


def test_missing_key_and_bad_prompts(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EnvironmentError, match=KEY_ENV): OpenAIBackend('m', 'http://127.0.0.1:9/v1', api_key_env=KEY_ENV)
    p = tmp_path/'p.yaml'
    p.write_text("rewrite: {system: s, user: 'no placeholder', completion: '{caption}'}\nrelevance: {system: s, user: '{caption}', completion: '{caption}'}\n")
    with pytest.raises(ParamsError, match=r"p.yaml: field 'rewrite.user' must contain '\{caption\}'"): load_prompts(p)
    assert set(load_prompts()) >= {'rewrite', 'relevance', 'temperature', 'max_tokens'}


def test_concurrency_is_bounded(tmp_path):
    with FakeChatServer(latency=0.05) as srv:
        backend(srv, tmp_path, max_concurrency=3).rewrite_many(CAPS)
    assert 2 <= srv.max_in_flight <= 3


# ---- hf backend ------------------------------------------------------------------------------------------------------

def test_hf_backend_tiny_gpt2(tmp_path):
    path = tiny_causal_lm(tmp_path/'lm', words=['red', 'dog'])
    ds, rep = rewrite_captions(pairs(CAPS[:4]), 'hf', model_path=path, max_new_tokens=5, cache_file=tmp_path/'hf.jsonl', cache=tmp_path)
    assert rep['n_out'] + rep['n_failed'] == 4 and rep['requests']['n_requested'] == 4
    kept, r2 = relevance_filter(pairs(CAPS[:4]), 'hf', model_path=path, max_new_tokens=3, cache_file=tmp_path/'hf.jsonl', cache=tmp_path)
    assert r2['n_kept'] + r2['n_dropped'] == 4 and r2['n_dropped'] >= r2['n_unparsed']
    with pytest.raises(FileNotFoundError, match='no config.json'): HFBackend(tmp_path)


# ---- rules -----------------------------------------------------------------------------------------------------------

def test_rules_rewrite_is_child_directed_and_deterministic():
    r = RulesBackend(seed=0)
    caps = ["a studio shot of a red ball on a white background", "stock photo of a white lemonade against a light backdrop",
            "a high quality image of a grey shark, centered", "a silver 2018 ford focus vehicle parked in a lot"]
    outs = [r.rewrite(c) for c in caps]
    assert outs == [RulesBackend(seed=0).rewrite(c) for c in caps]
    assert [r.parse(c)['basic'] for c in caps] == ['ball', 'drink', 'fish', 'car']
    for o in outs:
        assert not set(o.replace('?', ' ').replace('!', ' ').split()) & {'studio', 'shot', 'background', 'backdrop', 'stock', 'photo', 'centered'}
    forms = collections.Counter(sentence_form(RulesBackend(seed=s).rewrite(caps[0])) for s in range(40))
    assert set(forms) >= {'question', 'exclamation', 'naming'}
    assert r.relevant("a close-up photo of a brown handbag") and not r.relevant("a chart of quarterly revenue growth")


def test_sentence_forms_and_stats():
    assert [sentence_form(t) for t in ["where's the ball?", "look!", "that's a dog", "a red ball", "a photo of a dog on a table"]] \
        == ['question', 'exclamation', 'naming', 'naming', 'other']
    st = transfer_stats({'a': ['the dog the dog the dog'], 'b': ['zyzzyva quux dog cat bird']})
    assert st['a']['ttr_tokens'] == st['b']['ttr_tokens'] == 5 and st['a']['ttr'] == 0.4 and st['b']['ttr'] == 1.0
    assert st['a']['vocab_share'] == 1.0 and st['b']['vocab_share'] == 0.6


# ---- filtering -------------------------------------------------------------------------------------------------------

class LenScorer:
    def __init__(self, key='len'): self.key = key
    def score(self, images, texts): return np.array([np.nan if 'nan' in t else 0.1*len(t.split()) for t in texts])


def test_filter_counts_quantile_and_cache(tmp_path):
    ds = pairs(['a', 'a b', 'a b c', 'nan x y z', 'a b c d', 'a b c d e'], aligned=[False, False, True, True, True, False])
    kept, rep = filter_pairs(ds, LenScorer(), threshold=0.2, cache=tmp_path)
    assert list(kept['text']) == ['a b c', 'a b c d', 'a b c d e'] and rep['n_nonfinite'] == 1 and rep['n_dropped'] == 3
    assert rep['aligned']['precision'] == pytest.approx(2/3) and rep['aligned']['recall'] == pytest.approx(2/3)
    assert filter_pairs(ds, LenScorer(), threshold=0.2, cache=tmp_path)[1]['cached']
    assert not filter_pairs(ds, LenScorer('other'), threshold=0.2, cache=tmp_path)[1]['cached']   # another scorer, another key
    class NoKey:
        def score(self, images, texts): return np.ones(len(texts))
    filter_pairs(ds, NoKey(), cache=tmp_path)
    assert not filter_pairs(ds, NoKey(), cache=tmp_path)[1]['cached']                              # unidentifiable: never cached
    kq, rq = filter_pairs(ds, LenScorer(), quantile=0.5, cache=tmp_path)
    assert rq['threshold'] == pytest.approx(0.3) and len(kq) == 2
    with pytest.raises(ValueError, match='quantile must be in'): filter_pairs(ds, LenScorer(), quantile=1.5)


def test_fingerprint_follows_content():
    assert dataset_fingerprint(pairs(['a', 'b'])) == dataset_fingerprint(pairs(['a', 'b']))
    assert dataset_fingerprint(pairs(['a', 'b'])) != dataset_fingerprint(pairs(['a', 'c']))
    assert dataset_fingerprint(pairs(['a', 'b', 'c']).select([0, 1])) == dataset_fingerprint(pairs(['a', 'b']))


# ---- matching --------------------------------------------------------------------------------------------------------

def test_knn_topk_blocks_match_full_sort():
    H, C = clustered_embeddings(37, 300, dim=16, n_clusters=10, seed=2)
    q, c = torch.tensor(H), torch.tensor(C)
    v, i = knn_topk(q, c, 7, block_q=5, block_c=23)
    full = (q @ c.T).topk(7, dim=1)
    assert torch.allclose(v, full.values, atol=1e-6) and (i == full.indices).float().mean() > 0.99


def test_exact_is_optimal_and_sparse_close():
    rng = np.random.default_rng(0)
    H, C = rng.standard_normal((5, 8)), rng.standard_normal((7, 8))
    m = match_distribution(H, C, method='exact')
    Hn, Cn = H/np.linalg.norm(H, axis=1, keepdims=True), C/np.linalg.norm(C, axis=1, keepdims=True)
    best = max(sum(Hn[i] @ Cn[p[i]] for i in range(5)) for p in itertools.permutations(range(7), 5))
    assert m.sim.sum() == pytest.approx(best, abs=1e-5)
    H, C = clustered_embeddings(400, 3000, dim=32, n_clusters=60, seed=3)
    ex, sp = match_distribution(H, C, method='exact'), match_distribution(H, C, method='sparse', k=8)
    assert len(set(sp.cand.tolist())) == 400 and (ex.sim.sum() - sp.sim.sum())/ex.sim.sum() < 0.01
    g = matching_gap(H, C, rows=200, k=8)
    assert 0 <= g['cost_gap'] < 0.01 and g['subproblems'][0]['cands'] == 1500


def test_sparse_fallback_when_knn_graph_has_no_full_matching():
    _, C = clustered_embeddings(1, 500, dim=16, n_clusters=5, seed=4)
    H = np.tile(C[:1], (40, 1)) + 1e-4*np.random.default_rng(0).standard_normal((40, 16))
    m = match_distribution(H, C, method='sparse', k=2, k_max=4)
    assert len(set(m.cand.tolist())) == 40 and m.report['n_fallback'] > 0 and m.report['k'] == 4


def test_match_sizes_and_errors():
    H, C = clustered_embeddings(50, 400, dim=16, seed=5)
    assert len(match_distribution(H, C, n=20).cand) == 20
    m = match_distribution(H, C, n=120)
    assert len(set(m.cand.tolist())) == 120 and collections.Counter(m.home.tolist()).most_common(1)[0][1] == 3
    with pytest.raises(ValueError, match='non-finite'): match_distribution(np.full((2, 16), np.nan), C)
    with pytest.raises(ValueError, match="method must be"): match_distribution(H, C, method='greedy')


# ---- the pipeline ----------------------------------------------------------------------------------------------------

class MeanColour:
    "A fast stand-in embedder: mean colour and a 4x4 thumbnail."
    key = 'test-thumb'
    def __call__(self, images):
        return np.stack([np.asarray(im.convert('RGB').resize((4, 4)), dtype=np.float32).ravel()/255 + 1e-3 for im in images])


def tiny_world():
    from babyvlm.world import build_world, WorldConfig
    return build_world(WorldConfig(n_home_train=110, n_home_val=44, n_web=200, n_web_val=40, labeled_s_per_category=2, seed=3), progress=False)


def lit_reference(world, cfg, cache=None):
    "The study's scorer and embedder: LiT heads over the pretrained encoders, trained on the web pairs (`families.transfer_models`)."
    from babyvlm.families import transfer_models
    return transfer_models(world, cfg, cache)


def test_build_transferred_plumbing(tmp_path):
    world = tiny_world()
    cfg = TransferConfig(filter_quantile=0.5, match_method='sparse', match_k=4)
    out, rep = build_transferred(world, cfg, scorer=LenScorer(), embedder=MeanColour(), cache=tmp_path, progress=False)
    c = rep['counts']
    assert c['home_kept'] == len(out['home']) <= 55 and c['transferred'] == c['random'] == len(out['transferred'])
    assert c['transferred'] == min(c['home_kept'], c['relevant']//2) and rep['steps']['match']['method'] == 'sparse'
    assert set(out['transferred']['source_index']) <= set(out['candidates']['source_index'])
    assert rep['stats']['transferred']['vocab_share'] > rep['stats']['random']['vocab_share']
    json.dumps(rep)                                                    # the report is plain JSON
    again = build_transferred(world, cfg, scorer=LenScorer(), embedder=MeanColour(), cache=tmp_path, progress=False)[1]
    assert all(again['steps'][s]['cached'] for s in ('filter', 'rewrite', 'relevance'))
    assert list(random_baseline(world.web['train'], 10, 1)[0]['text']) == list(random_baseline(world.web['train'], 10, 1)[0]['text'])


def test_build_transferred_needs_scorer_and_embedder():
    with pytest.raises(TypeError, match='scorer and embedder must be given'): build_transferred(object(), None, None, None)
    with pytest.raises(TypeError, match='embedder must be given'): build_transferred(object(), None, LenScorer(), None)


def test_build_transferred_with_the_reference(tmp_path):
    "The study's scorer and embedder: both scoring paths agree, and the step caches are keyed by their identities."
    world = tiny_world()
    cfg = TransferConfig(filter_quantile=0.3, image_size=64, reference_steps=40)
    scorer, embedder = lit_reference(world, cfg, tmp_path)
    home = world.home['train']; few = home.select(range(6)); b = few[:]
    assert np.allclose(scorer.score(b['image'], b['text']), scorer.score_dataset(few), atol=1e-4)
    assert scorer_key(scorer) == scorer.key and scorer.key.startswith('lit-reference:64:') and embedder.key == 'effnet-lite0:64'
    out, rep = build_transferred(world, cfg, scorer, embedder, cache=tmp_path, progress=False)
    assert rep['steps']['filter']['scorer'] == scorer.key and rep['counts']['home_kept'] in range(75, 79)
    emb = step_dir('embed', dict(data=dataset_fingerprint(home.select_columns(['image'])), embedder=embedder.key), tmp_path)/'emb.npy'
    assert emb.exists()                                                # matching's embeddings, under the embedder's key
    direct = embed_images(few, EffNetEmbedder(image_size=64), cache=tmp_path/'direct')   # the encoder itself, not the feature cache
    assert np.allclose(direct, np.load(emb)[:6], atol=1e-4)
    with torch.no_grad(): scorer.model.image_head.bias.add_(0.01)     # other heads: another scorer key
    other = ReferenceScorer(scorer.model, cache=tmp_path)
    assert other.key != scorer.key
    rep2 = build_transferred(world, cfg, other, embedder, cache=tmp_path, progress=False)[1]
    assert not rep2['steps']['filter']['cached'] and rep2['steps']['rewrite']['cached'] and rep2['steps']['filter']['scorer'] == other.key


def test_random_relevant_condition():
    "Issue 13: the condition that isolates matching draws from the transfer pipeline's rewritten relevant candidates."
    from babyvlm.study import load_params, TRANSFER_SOURCES
    p = load_params('default', 'home_random_relevant', 0)
    assert p.data.sources == ['home_filtered', 'random_relevant'] and 'random_relevant' in TRANSFER_SOURCES
    assert 'home_random_relevant' in load_params('default', 'home', 0).conditions
