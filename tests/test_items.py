"The embedded benchmark items: sizes, the paper's split, held-out assets, exact minimal edits, the real-photo slice."
import collections
import numpy as np, pytest
from babyvlm.assets import asset_index
from babyvlm.world import WorldConfig, build_world, split_groups
from babyvlm.benchmarks import VTWTItem, WinogroundItem, CaptionItem, LabeledSTrial
from babyvlm.items import REAL_PHOTOS, KINDS

TINY = WorldConfig(n_home_train=110, n_home_val=44, n_web=60, n_web_val=20, labeled_s_per_category=2, seed=3,
                   n_vtwt=200, n_winoground=60, n_captions=44)

@pytest.fixture(scope='module')
def world(): return build_world(TINY, progress=False)

def test_default_sizes_meet_the_paper():
    c = WorldConfig()
    assert c.n_vtwt >= 900 and c.n_winoground >= 300 and c.n_captions >= 250

def test_counts_and_types(world):
    vt, wg, cp, rp = (world.benchmark(n) for n in ('vtwt', 'baby_winoground', 'saycam_caption', 'real_photos'))
    assert (len(vt), len(wg), len(cp)) == (200, 60, 44)
    assert all(isinstance(x, VTWTItem) for x in vt) and all(isinstance(x, WinogroundItem) for x in wg)
    assert all(isinstance(x, CaptionItem) and len(x.references) == 3 for x in cp)
    assert all(isinstance(t, LabeledSTrial) for t in rp) and len(rp) == 4*sum(map(len, REAL_PHOTOS.values()))
    assert world.manifest['counts']['vtwt_items'] == 200 and 'real_photos' in world.manifest['benchmarks']

def test_vtwt_split_and_word_classes(world):
    vt = world.benchmark('vtwt')
    k = collections.Counter(x.kind for x in vt)
    for kind, share in KINDS.items(): assert abs(k[kind]/len(vt) - share) < 0.1, (kind, k)
    assert set(x.word_class for x in vt) == {'attribute-noun', 'action-object', 'object-place', 'noun-noun'}
    assert all(len(x.positive.split()) == 2 and len(x.negative.split()) == 2 for x in vt)

def test_items_use_no_training_asset(world):
    idx = asset_index(); split = split_groups(idx, TINY)
    # assets a training or validation image can show: those of those splits with a category or web category
    # (the action pictures have neither: no training image ever shows them, so the items may use them all)
    train = {r['asset_id'] for r in idx if split.get(r['group']) in ('train', 'val') and (r['category'] or r['web_category'])}
    used = {a for s in world.benchmark_dataset('vtwt')['assets'] for a in s.split()}
    used |= set(world.benchmark_dataset('saycam_caption')['asset_id'])
    assert used and not used & train
    assert not set(world.benchmark_dataset('saycam_caption')['asset_id']) & set(world.home['train']['asset_id'])

def test_winoground_is_vtwt_plus_exact_edit(world):
    vt, wg = world.benchmark('vtwt'), world.benchmark('baby_winoground')
    for a, b in zip(vt, wg):
        assert b.phrases == [a.positive, a.negative]
        x, y = np.asarray(b.images[0]), np.asarray(b.images[1])
        assert (x == np.asarray(a.image)).all() and (x != y).any()
    # object-place edits keep the object pixels of the scene centre; attribute edits keep the border
    same_border = [((np.asarray(b.images[0])[:3] == np.asarray(b.images[1])[:3]).mean())
                   for a, b in zip(vt, wg) if a.word_class == 'attribute-noun' and a.kind == 'first']
    assert same_border and np.median(same_border) == 1.0

def test_items_are_deterministic(tmp_path, world):
    "A fresh build of the same config (assets reused) renders the same item pixels and phrases."
    from babyvlm.core import cache_dir
    (tmp_path/'assets').symlink_to(cache_dir()/'assets')
    w2 = build_world(TINY, cache=tmp_path, progress=False)
    assert w2.root != world.root
    for name in ('vtwt', 'baby_winoground', 'saycam_caption'):
        a, b = w2.benchmark_dataset(name), world.benchmark_dataset(name)
        assert a.cast_column('image', a.features['image'].__class__(decode=False))['image'] == \
               b.cast_column('image', b.features['image'].__class__(decode=False))['image'], name
    assert [x.negative for x in w2.benchmark('vtwt')] == [x.negative for x in world.benchmark('vtwt')]
