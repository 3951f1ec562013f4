"The embedded world: disjoint asset groups, determinism, clear errors, and its place in the pipeline."
import ast
from dataclasses import asdict
from pathlib import Path
import numpy as np, pytest, datasets
from PIL import Image
from babyvlm.core import stable_hash
from babyvlm.assets import asset_index, assets_dir, AssetError, LABELED_S_CATEGORIES
from babyvlm.compose import split_groups, reserve_web, make_pools, AssetStore, PAIR_FEATURES, parallel_map
from babyvlm.world import WorldConfig, World, build_world, world_assets, check_images

TINY = WorldConfig(n_home_train=110, n_home_val=44, n_web=60, n_web_val=20, labeled_s_per_category=2, seed=3)
PKG = Path(__file__).resolve().parents[1]/'babyvlm'

@pytest.fixture(scope='module')
def world(): return build_world(TINY, progress=False)

def test_contract_columns(world):
    for dd, splits in ((world.home, ('train', 'validation')), (world.web, ('train', 'validation'))):
        assert set(splits) <= set(dd)
        for s in splits:
            x = dd[s][0]
            assert isinstance(x['image'], Image.Image) and x['image'].size == (64, 64) and x['image'].mode == 'RGB'
            assert {'image', 'text', 'category', 'asset_id', 'aligned'} <= set(x)
    assert set(world.home['train']['category']) == set(LABELED_S_CATEGORIES)
    assert world.root.name == stable_hash(asdict(TINY)) and world.config == TINY
    assert world.manifest['counts']['home_train'] == 110
    assert not {'labeled_s', 'vtwt', 'real_photos'} & {p.name for p in world.root.iterdir()}   # benchmarks: the next stage
    assert 'benchmarks' not in world.manifest

def test_asset_groups_disjoint(world):
    g = lambda ds: set(ds['group'])
    train, val, test = g(world.home['train']), g(world.home['validation']), set(world.manifest['groups']['test'])
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    assert not (g(world.web['train']) & test) and not (g(world.web['validation']) & test)
    m = world.manifest['groups']
    assert not (set(m['train']) & set(m['test'])) and not (set(m['val']) & set(m['test'])) and not (set(m['web']) & set(m['test']))
    assert not (set(m['web']) & set(m['train'])) and not (set(m['web']) & set(m['val']))

def test_every_split_has_every_category():
    idx = asset_index(); so = split_groups(idx, 0, 0.25, 0.15)
    for s in ('train', 'val', 'test'):
        p = make_pools(idx, so, s)
        assert all(p.objects.get(c) for c in LABELED_S_CATEGORIES), s
        assert p.textures.get('floor') and p.distractors

def test_world_assets_follow_the_config():
    wa = world_assets(TINY)
    assert wa.split_of == reserve_web(wa.index, split_groups(wa.index, TINY.seed, TINY.test_share, TINY.val_share), TINY.seed, TINY.web_share)
    assert wa.store.maxside == 96 and set(wa.pools) == {'train', 'web', 'val', 'test'}

def test_determinism(world, tmp_path):
    (tmp_path/'assets').symlink_to(assets_dir())
    w2 = build_world(TINY, cache=tmp_path, progress=False, workers=2)
    assert w2.root.name == world.root.name and w2.cache == tmp_path
    for i in (0, 1, 50):
        assert np.array_equal(np.asarray(w2.home['train'][i]['image']), np.asarray(world.home['train'][i]['image']))
    assert w2.home['train']['text'] == world.home['train']['text']
    assert w2.web['train']['text'] == world.web['train']['text']

def test_reuse_and_incomplete(world, tmp_path):
    assert build_world(TINY, progress=False).root == world.root
    with pytest.raises(FileNotFoundError, match='no complete world'): World(tmp_path)

def test_corrupt_image_in_dataset_is_named(world):
    rows = world.home['train'].select(range(3)).cast_column('image', datasets.Image(decode=False)).to_dict()
    rows['image'][1] = {'bytes': b'garbage', 'path': None}
    with pytest.raises(ValueError, match=r'home/train: row 1 \(asset'):
        check_images(datasets.Dataset.from_dict(rows, features=PAIR_FEATURES), 'home/train')

def test_corrupt_asset_file_is_named(tmp_path):
    idx = asset_index(); r = next(x for x in idx if x['asset_id'] == 'qabcs-data/doll')
    f = tmp_path/r['path']; f.parent.mkdir(parents=True); f.write_bytes(b'\x89PNG\r\n\x1a\n broken')
    with pytest.raises(AssetError, match='doll.png'): AssetStore(tmp_path, [r])('qabcs-data/doll')

def test_naming_share(world):
    assert abs(np.mean(world.home['train']['aligned']) - TINY.naming_share) < 0.15
    assert all(t == t.lower() for t in world.home['train']['text'])

# The caregiver's language of the default world, at the default world's size (8,000 home utterances) but tiny images:
# the utterances do not depend on the image side (the same draws), only on the generator and its parameters.
LANG = WorldConfig(n_home_train=8000, n_home_val=22, n_web=22, n_web_val=22, image_size=24, labeled_s_per_category=1)

@pytest.fixture(scope='module')
def lang_world(): return build_world(LANG, progress=False)

def test_language_targets(lang_world):
    "Issue 13's targets: >= 1,000 distinct words, mean 6-10 words, one-word utterances, a tail to the 25-word cap."
    from babyvlm.world import language_stats
    texts = lang_world.home['train']['text']; st = language_stats(texts)
    assert st['distinct_words'] >= 1000, st['distinct_words']
    assert 6 <= st['mean_words'] <= 10, st['mean_words']
    assert st['one_word_share'] >= 0.005 and st['max_words'] == 25 and st['length_hist'][25] >= 10
    assert st['distinct_utterances'] >= 0.9*len(texts) and st['in_cvcl_vocab'] == 1.0
    assert not [w for w, _ in st['top_first_words'][:3] if w in ('look',)] or st['top_first_words'][0][1] < 0.15*len(texts)

def test_naming_share_is_the_parameter(lang_world):
    "`aligned` = the utterance names the category shown, at `naming_share`; the others never say its words."
    import re
    from babyvlm.world import HOME_WORDS
    ds = lang_world.home['train']
    al, texts, cats = np.array(ds['aligned']), ds['text'], ds['category']
    assert abs(al.mean() - LANG.naming_share) < 0.02 and LANG.naming_share <= 0.5
    words = lambda c: {x for w, _ in HOME_WORDS[c] for x in w.split() if x not in ('your', "daddy's")}
    said = np.array([bool(words(c) & set(re.findall(r"[a-z']+", t))) for t, c in zip(texts, cats)])
    assert said[al].all() and not said[~al].any()

def test_items_words_grounded_in_home_speech(lang_world):
    "VTWT / Winoground colours, sizes, places and actions occur next to the category word, at a rate set by `grounding_share`."
    from babyvlm.world import ACTION_WORDS, HOME_WORDS
    ds = lang_world.home['train']
    texts = [t for t, a in zip(ds['text'], ds['aligned']) if a]
    colour = sum(bool(__import__('re').search(r'\b(red|blue|green|yellow|pink|orange) (ball|car|chair|basket|toy|table|door)', t)) for t in texts)
    place = sum((' inside' in t or ' outside' in t) for t in texts)
    size = sum(bool(__import__('re').search(r'\b(big|little) \w+', t)) for t in texts)
    action = sum(any(f'{v} the {w}' in t for c, vs in ACTION_WORDS.items() for v in vs for w, _ in HOME_WORDS[c][:1]) for t in texts)
    assert colour >= 20 and place >= 50 and size >= 20 and action >= 50, (colour, place, size, action)
    # no grounding: those phrases vanish from the namings
    from babyvlm.world import home_utterance, _lang
    from babyvlm.compose import compose_home
    wa = world_assets(LANG); pools = wa.pools['train']; cfg0 = WorldConfig(naming_share=1.0, grounding_share=0.0)
    for k in range(200):
        m = {}; rng = np.random.default_rng(k)
        _, aid = compose_home('ball', pools, wa.store, rng, 24, meta=m)
        t, _ = home_utterance('ball', aid, m, wa.store, _lang(cfg0), rng, cfg0)
        assert ' inside' not in t and ' outside' not in t, t

def test_web_captions_say_a_colour_once(world):
    from babyvlm.world import _COLOURS
    cs = {c for c, _ in _COLOURS}
    for t in list(world.web['train']['text']) + list(world.web['validation']['text']):
        ws = t.replace(',', ' ').split()
        assert not any(a == b and a in cs for a, b in zip(ws, ws[1:])), t

def test_web_categories_not_cut_alphabetically():
    from babyvlm.world import _web_ids
    wa = world_assets(TINY)
    allc = _web_ids(wa.index, wa.split_of, 'train', WorldConfig())
    assert {'train', 'tree', 'truck', 'toy', 'window'} <= set(allc)   # all categories by default
    some = _web_ids(wa.index, wa.split_of, 'train', WorldConfig(web_categories=40))
    assert len(some) == 40 and sorted(some) != sorted(allc)[:40]

def test_parallel_composing_is_identical():
    from babyvlm.world import _home_row
    idx = asset_index(); cfg = WorldConfig(seed=5); so = split_groups(idx, cfg.seed, cfg.test_share, cfg.val_share)
    pools = make_pools(idx, so, 'train'); store = AssetStore(assets_dir(), idx, 96)
    f = lambda i: _home_row(i, pools, store, cfg, 1)
    assert parallel_map(f, 240, 2) == parallel_map(f, 240, 1)

def _imported(module):
    "The babyvlm modules `module` imports (at top level or inside functions), as (module, names)."
    out = []
    for n in ast.walk(ast.parse((PKG/f'{module}.py').read_text())):
        if isinstance(n, ast.ImportFrom):
            m = ('babyvlm.' if n.level else '') + (n.module or '')
            if m.startswith('babyvlm'): out.append((m, [a.name for a in n.names]))
        elif isinstance(n, ast.Import): out += [(a.name, []) for a in n.names if a.name.startswith('babyvlm')]
    return out

def test_pipeline_order():
    "assets -> compose -> world -> benchmarks -> items: no module imports a later stage, even lazily."
    order = ['core', 'assets', 'compose', 'world', 'benchmarks', 'items']
    for k, mod in enumerate(order):
        later = {f'babyvlm.{m}' for m in order[k + 1:]}
        bad = [m for m, _ in _imported(mod) if m in later]
        assert not bad, f"babyvlm/{mod}.py imports {bad}, a later stage"
    assert not [m for m, _ in _imported('world') if m in ('babyvlm.items', 'babyvlm.benchmarks')]


def test_web_spectrum_and_assets(lang_world):
    "Every web image has a home-likeness; in-home categories are more home-like; web assets are other instances than home's."
    from babyvlm.world import IN_HOME
    web, home, m = lang_world.web['train'], lang_world.home['train'], lang_world.manifest
    h = np.array(web['home_likeness']); assert ((0 <= h) & (h <= 1)).all() and h.std() > 0.1
    wa = world_assets(LANG)
    from babyvlm.world import _web_split, _web_ids
    ids = _web_ids(wa.index, wa.split_of, 'train', LANG)
    ds = _web_split(600, ids, wa.store, LANG, 3, wa.pools['web'])
    h, inh = np.array(ds['home_likeness']), np.isin(ds['category'], sorted(IN_HOME))
    assert h[inh].mean() > h[~inh].mean() + 0.2 and inh.any() and (~inh).any()
    web_assets, home_assets = set(ds['asset_id']), set(home['asset_id'])
    shared = web_assets & home_assets
    assert shared <= set(m['web_shared_with_home']) and len(shared) <= 0.05*len(web_assets), len(shared)
    assert not web_assets & set(m['asset_ids']['test']) and not home_assets & set(m['asset_ids']['test'])
    assert all(wa.split_of[wa.store.by_id[a]['group']] in ('web', 'train') for a in web_assets)
