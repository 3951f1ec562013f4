"The embedded benchmarks: sizes, the paper's split, held-out assets, exact minimal edits, the real-photo slice, the cache."
import collections, json, shutil
import numpy as np, pytest, datasets
from babyvlm.assets import asset_index
from babyvlm.compose import split_groups
from babyvlm.world import WorldConfig, World, build_world
from babyvlm.benchmarks import VTWTItem, WinogroundItem, CaptionItem, LabeledSTrial, trials_from_dataset
from babyvlm.items import (REAL_PHOTOS, KINDS, BENCHMARK_NAMES, TRIAL_FEATURES, Benchmarks, build_benchmarks,
                           benchmarks_fingerprint)
from test_world import _imported

TINY = WorldConfig(n_home_train=110, n_home_val=44, n_web=60, n_web_val=20, labeled_s_per_category=2, seed=3,
                   n_vtwt=200, n_winoground=60, n_captions=44)
raw = lambda ds, c='image': ds.cast_column(c, datasets.Image(decode=False))[c]

@pytest.fixture(scope='module')
def world(): return build_world(TINY, progress=False)

@pytest.fixture(scope='module')
def bench(world): return build_benchmarks(world, progress=False)

def test_default_sizes_meet_the_paper():
    c = WorldConfig()
    assert c.n_vtwt >= 900 and c.n_winoground >= 300 and c.n_captions >= 250

def test_counts_and_types(bench):
    assert bench.names == list(BENCHMARK_NAMES) and list(bench) == bench.names
    vt, wg, cp, rp = (bench[n] for n in ('vtwt', 'baby_winoground', 'saycam_caption', 'real_photos'))
    assert (len(vt), len(wg), len(cp)) == (200, 60, 44)
    assert all(isinstance(x, VTWTItem) for x in vt) and all(isinstance(x, WinogroundItem) for x in wg)
    assert all(isinstance(x, CaptionItem) and len(x.references) == 3 for x in cp)
    assert all(isinstance(t, LabeledSTrial) for t in rp) and len(rp) == 4*sum(map(len, REAL_PHOTOS.values()))
    assert bench.manifest['counts']['vtwt_items'] == 200 and 'real_photos' in bench
    with pytest.raises(KeyError, match="unknown benchmark 'winoground'.*available"): bench.get('winoground')

def test_labeled_s(world, bench):
    t = bench.labeled_s
    assert len(t) == 22*2 and all(isinstance(x, LabeledSTrial) and len(x.images) == 4 for x in t)
    assert all(x.categories[x.target] == x.target_category for x in t)
    assert bench['labeled_s'] is t and bench.manifest['counts']['labeled_s_trials'] == 44
    g = set(bench.dataset('labeled_s')['group'])
    assert g and g <= set(world.manifest['groups']['test'])
    assert not g & set(world.home['train']['group']) and not g & set(world.home['validation']['group'])
    assert not g & set(world.web['train']['group'])

def test_vtwt_split_and_word_classes(bench):
    vt = bench['vtwt']
    k = collections.Counter(x.kind for x in vt)
    for kind, share in KINDS.items(): assert abs(k[kind]/len(vt) - share) < 0.1, (kind, k)
    assert set(x.word_class for x in vt) == {'attribute-noun', 'action-object', 'object-place', 'noun-noun'}
    assert all(len(x.positive.split()) == 2 and len(x.negative.split()) == 2 for x in vt)

def test_items_use_no_training_asset(world, bench):
    from babyvlm.world import world_assets
    idx = asset_index(); split = world_assets(TINY).split_of
    # assets a training or validation image (home or web) can show: those of those splits with a category or web
    # category (the action pictures have neither: no training image ever shows them, so the items may use them all)
    train = {r['asset_id'] for r in idx if split.get(r['group']) in ('train', 'web', 'val') and (r['category'] or r['web_category'])}
    assert not train & set(world.manifest['asset_ids']['test'])
    for d in (world.home, world.web):
        for s in d: assert not set(d[s]['asset_id']) & set(world.manifest['asset_ids']['test'])
    used = {a for s in bench.dataset('vtwt')['assets'] for a in s.split()}
    used |= set(bench.dataset('saycam_caption')['asset_id']) | set(bench.dataset('labeled_s')['asset_id'])
    assert used and not used & train
    assert not set(bench.dataset('saycam_caption')['asset_id']) & set(world.home['train']['asset_id'])
    assert not used & (set(world.web['train']['asset_id']) | set(world.web['validation']['asset_id']))
    assert not used & set(world.manifest['asset_ids']['web'])

def test_winoground_is_vtwt_plus_exact_edit(bench):
    vt, wg = bench['vtwt'], bench['baby_winoground']
    for a, b in zip(vt, wg):
        assert b.phrases == [a.positive, a.negative]
        x, y = np.asarray(b.images[0]), np.asarray(b.images[1])
        assert (x == np.asarray(a.image)).all() and (x != y).any()
    # object-place edits keep the object pixels of the scene centre; attribute edits keep the border
    same_border = [((np.asarray(b.images[0])[:3] == np.asarray(b.images[1])[:3]).mean())
                   for a, b in zip(vt, wg) if a.word_class == 'attribute-noun' and a.kind == 'first']
    assert same_border and np.median(same_border) == 1.0

def test_benchmarks_are_deterministic(tmp_path, world, bench):
    "A fresh build of the same config (assets reused), in two processes, renders the same rows."
    from babyvlm.core import cache_dir
    (tmp_path/'assets').symlink_to(cache_dir()/'assets')
    w2 = build_world(TINY, cache=tmp_path, progress=False, workers=2)
    b2 = build_benchmarks(w2, progress=False, workers=2)
    assert w2.root != world.root and b2.root == w2.root/'benchmarks'
    for name in BENCHMARK_NAMES:
        a, b = b2.dataset(name), bench.dataset(name)
        assert raw(a) == raw(b), name
        assert a.remove_columns([c for c, f in a.features.items() if isinstance(f, datasets.Image)]).to_dict() == \
               b.remove_columns([c for c, f in b.features.items() if isinstance(f, datasets.Image)]).to_dict(), name
    assert raw(b2.dataset('baby_winoground'), 'image_edit') == raw(bench.dataset('baby_winoground'), 'image_edit')

def test_cache_is_keyed_by_world_and_code(tmp_path, bench):
    from babyvlm.core import cache_dir
    assert build_benchmarks(World(bench.root.parent), progress=False).root == bench.root   # reused
    (tmp_path/'assets').symlink_to(cache_dir()/'assets')
    w2 = build_world(TINY, cache=tmp_path, progress=False)
    b2 = build_benchmarks(w2, progress=False)
    m = json.loads((b2.root/'manifest.json').read_text())
    assert (m['world'], m['world_code'], m['code']) == (w2.manifest['hash'], w2.manifest['code'], benchmarks_fingerprint())
    m['code'] = 'other'; (b2.root/'manifest.json').write_text(json.dumps(m))
    assert build_benchmarks(w2, progress=False).manifest['code'] == benchmarks_fingerprint()   # rebuilt
    mw = json.loads((w2.root/'manifest.json').read_text()); mw['code'] = 'other'; (w2.root/'manifest.json').write_text(json.dumps(mw))
    w3 = build_world(TINY, cache=tmp_path, progress=False)   # the world is rebuilt, its benchmarks go with it
    assert not (w3.root/'benchmarks').exists()
    with pytest.raises(FileNotFoundError, match='no complete benchmarks'): Benchmarks(w3.root/'benchmarks')

def test_changed_packs_are_an_error(tmp_path):
    from babyvlm.core import cache_dir
    (tmp_path/'assets').symlink_to(cache_dir()/'assets')
    w = build_world(TINY, cache=tmp_path, progress=False)
    m = json.loads((w.root/'manifest.json').read_text()); m['asset_ids']['test'] = m['asset_ids']['test'][:-1]
    (w.root/'manifest.json').write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"manifest.json: field asset_ids\['test'\] lists .* delete"):
        build_benchmarks(World(w.root), progress=False)

def test_corrupt_images_are_named(bench):
    assert bench.check()['labeled_s'] == 176
    ls = bench.dataset('labeled_s').select(range(8)).cast_column('image', datasets.Image(decode=False)).to_dict()
    ls['image'][6] = {'bytes': b'garbage', 'path': None}
    with pytest.raises(ValueError, match='trial 1, position 2'):
        trials_from_dataset(datasets.Dataset.from_dict(ls, features=TRIAL_FEATURES))

def test_items_imports_nothing_private():
    bad = [(m, n) for m, names in _imported('items') for n in names if n.startswith('_')]
    assert not bad, f"babyvlm/items.py imports private names {bad}"

def test_no_language_prior_on_the_default_world():
    "Issue 13: the text-only bigram control of every condition's language sits at chance on the default world's VTWT."
    from babyvlm.study import load_params
    from babyvlm.evaluate import TextPriorScorer, evaluate_vtwt, EvalConfig
    from babyvlm.transfer import RulesBackend
    w = build_world(load_params('default', 'home').world, progress=False); b = build_benchmarks(w, progress=False)
    vt = b['vtwt']; n = len(vt)
    home, web = list(w.home['train']['text']), list(w.web['train']['text'])
    rewritten = [x for x in RulesBackend().rewrite_many(web)[0] if x]
    named = [t for t, a in zip(home, w.home['train']['aligned']) if a]   # what a filter that keeps the aligned pairs leaves
    for name, texts in [('home', home), ('home_filtered', named), ('home_random', named + web),
                        ('home_transferred', named + rewritten), ('transferred', rewritten)]:
        m, _ = evaluate_vtwt(TextPriorScorer(texts), vt, EvalConfig(n_boot=500))
        # mirrored items: every pair without a tie has exactly one item right, whatever the language
        assert m['n_correct'] == (n - m['n_ties'])//2, (name, m['n_correct'], m['n_ties'])
        if m['n_ties'] <= 0.01*n: assert m['ci_low'] <= 0.5 <= m['ci_high'], (name, m['accuracy'])
    m, _ = evaluate_vtwt(TextPriorScorer(home), vt, EvalConfig(n_boot=500))
    assert m['n_ties'] == 0 and m['accuracy'] == 0.5
