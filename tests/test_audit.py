"""The leakage audit (issue 15): on SAYCam-style frame names it finds the planted near duplicates and same-recording
neighbours; on the embedded world it reports zero shared assets and a near-duplicate rate."""
import contextlib, io, json, shutil
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from babyvlm.audit import audit_items, audit_world, parse_frame_name, format_audit
from babyvlm.benchmarks import load_babylmms
from babyvlm.testing import write_babylmms_fixture
from babyvlm.cli import main

COUNTS = dict(labeled_s=4, vtwt=30, baby_winoground=10, saycam_caption=12)
pixels = lambda ims: np.stack([np.asarray(im.convert('RGB').resize((8, 8)), dtype=np.float32).ravel() - 127.5 for im in ims])


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    """Item files with SAYCam frame names, and a training folder with: noisy copies of 3 VTWT frames under unrelated
    names (near duplicates), frames 0.4-1.6 s from 2 caption frames in their clip (close in time), a frame of another clip
    of a Winoground frame's recording (same recording only), and unrelated frames."""
    d = tmp_path_factory.mktemp('audit')
    c, im = write_babylmms_fixture(d/'bm', counts=COUNTS, n_images=1000, seed=1)
    items = load_babylmms(c, im)
    rng = np.random.default_rng(7); tr = d/'train'; tr.mkdir()
    save = lambda name, a: Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(tr/name)
    dup = [items['vtwt'][k].image for k in (0, 5, 9)]
    for j, p in enumerate(dup):
        save(f'S_20150101_0800_01_{900 + j:03d}_00.jpg', np.asarray(Image.open(p), dtype=np.float32) + rng.normal(0, 3, (16, 20, 3)))
    near = []
    for k, df in ((0, 2), (3, 8)):
        f = parse_frame_name(items['saycam_caption'][k].image)
        name = f"{f.recording}_{f.clip:03d}_{f.frame + df:02d}.jpg"; near.append((k, name, df / 5))
        save(name, rng.integers(0, 256, (16, 20, 3)))
    f = parse_frame_name(items['baby_winoground'][2].images.sources[0])
    far = f"{f.recording}_{f.clip + 40:03d}_{f.frame:02d}.jpg"; save(far, rng.integers(0, 256, (16, 20, 3)))
    for j in range(20): save(f'S_20160202_0900_02_{j:03d}_01.jpg', rng.integers(0, 256, (16, 20, 3)))
    return dict(csv=c, images=im, train=tr, items=items, dup=dup, near=near, far=far)


def _same_rec(items, names):
    "How many items of each benchmark share a recording with a training frame, computed from the names directly."
    recs = {parse_frame_name(n).recording for n in names if parse_frame_name(n)}
    out = {}
    for b, its in items.items():
        srcs = [list(t.images.sources) if hasattr(t, 'images') else [t.image] for t in its]
        out[b] = sum(any(parse_frame_name(s) and parse_frame_name(s).recording in recs for s in ss) for ss in srcs)
    return out


def test_the_audit_finds_the_planted_neighbours(planted):
    train = sorted(planted['train'].iterdir())
    res = audit_items(planted['items'], train, pixels, within_seconds=10, threshold=0.95)
    b = res['benchmarks']
    assert (res['threshold'], res['within_seconds'], res['n_train']) == (0.95, 10, len(train))
    assert b['vtwt']['n_near_duplicate'] == 3 and {e['item'] for e in b['vtwt']['near_duplicate']} == {'0', '5', '9'}
    assert all(e['cosine'] >= 0.95 for e in b['vtwt']['near_duplicate']) and b['labeled_s']['max_cosine'] < 0.9
    assert sum(r['n_near_duplicate'] for n, r in b.items() if n != 'vtwt') == 0    # random frames are never near duplicates
    assert b['saycam_caption']['n_within_seconds'] == 2
    assert sorted((e['item'], e['train'], e['seconds']) for e in b['saycam_caption']['within']) == \
        sorted((str(k), n, s) for k, n, s in planted['near'])
    assert b['baby_winoground']['n_within_seconds'] == 0 and b['baby_winoground']['n_same_recording'] >= 1
    assert any(e['train'] == planted['far'] and e['clips_apart'] == 40 for e in b['baby_winoground']['same_recording'])
    assert {n: r['n_same_recording'] for n, r in b.items()} == _same_rec(planted['items'], [p.name for p in train])
    assert 'near dup' in format_audit(res)
    tight = audit_items(planted['items'], train, pixels, within_seconds=1.0)['benchmarks']['saycam_caption']
    assert tight['n_within_seconds'] == 1                                          # 0.4 s yes, 1.6 s no


def test_cli_time_audit(planted, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(['audit', '--train', str(planted['train']), '--babylmms', str(planted['csv']), '--images', str(planted['images']),
                   '--no-embedding', '--within-seconds', '5', '--out', str(tmp_path)])
    assert rc == 0 and 'leakage audit' in out.getvalue()
    r = json.loads((tmp_path/'audit.json').read_text())
    assert r['within_seconds'] == 5 and r['encoder'] is None and r['benchmarks']['saycam_caption']['n_within_seconds'] == 2
    assert r['benchmarks']['vtwt']['n_near_duplicate'] is None and r['benchmarks']['vtwt']['max_cosine'] is None
    assert main(['audit', '--train', str(planted['train'])]) == 2
    assert main(['audit', '--within-seconds', '3']) == 2


def test_the_embedded_world_shares_no_asset_and_states_its_near_duplicate_rate():
    from babyvlm.world import WorldConfig, build_world
    from babyvlm.items import build_benchmarks
    tiny = WorldConfig(n_home_train=110, n_home_val=44, n_web=60, n_web_val=20, labeled_s_per_category=2, seed=3,
                       n_vtwt=200, n_winoground=60, n_captions=44)
    w = build_world(tiny, progress=False); bench = build_benchmarks(w, progress=False)
    res = audit_world(w, bench, pixels, threshold=0.95)
    for n in ('labeled_s', 'vtwt', 'baby_winoground', 'saycam_caption'):
        r = res['benchmarks'][n]
        assert r['n_sharing_assets'] == 0 and r['shared_assets'] == [], n
        assert 0 <= r['n_near_duplicate'] <= r['n_items'] and -1 <= r['max_cosine'] <= 1
    assert res['n_train_assets'] > 0 and res['n_train'] == len(w.home['train'])
    # the check can fail: a training image among the benchmark's is found as a near duplicate of itself
    from babyvlm.benchmarks import CaptionItem
    self_dup = audit_items({'saycam_caption': [CaptionItem('x', w.home['train'][0]['image'], ['a'])]},
                         list(w.home['train']['image']), pixels)
    assert self_dup['benchmarks']['saycam_caption']['n_near_duplicate'] == 1


def test_the_world_audit_is_kept_per_world_and_settings(monkeypatch):
    "audit_world with its default encoder computes once per world, code and settings; a damaged cache file is computed again."
    import babyvlm.audit as A
    from babyvlm.world import WorldConfig, build_world
    from babyvlm.items import build_benchmarks
    w = build_world(WorldConfig(n_home_train=110, n_home_val=44, n_web=60, n_web_val=20, labeled_s_per_category=2, seed=3,
                                n_vtwt=200, n_winoground=60, n_captions=44), progress=False)
    bench = build_benchmarks(w, progress=False)
    shutil.rmtree(bench.root/'audit', ignore_errors=True)
    calls, real, memo = [], A.audit_items, {}   # each setting's embedding audit is computed once here; the calls are counted
    monkeypatch.setattr(A, 'audit_items', lambda *a, **k: calls.append(k.get('threshold')) or json.loads(json.dumps(
        memo.setdefault(k.get('threshold'), real(*a, **k) if k.get('threshold') not in memo else None))))
    first = A.audit_world(w, bench)
    again = A.audit_world(w, bench)
    assert calls == [0.95] and again == first and first['encoder'] and len(list((bench.root/'audit').glob('*.json'))) == 1
    other = A.audit_world(w, bench, threshold=0.9)
    assert calls == [0.95, 0.9] and other['threshold'] == 0.9 and len(list((bench.root/'audit').glob('*.json'))) == 2
    A.audit_world(w, bench, cache=False); assert len(calls) == 3   # not read, not written
    f = sorted((bench.root/'audit').glob('*.json'), key=lambda p: p.stat().st_mtime)[0]
    f.write_text('{"truncat')
    with pytest.warns(UserWarning, match='not a readable audit'): redo = A.audit_world(w, bench)
    assert len(calls) == 4 and redo == first and json.loads(f.read_text()) == first
