"The babylmms-eval files: loader, inspection, error paths, and oracle scoring of loaded items."
import csv, hashlib, shutil
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from babyvlm.core import shared_dir
from babyvlm.assets import LABELED_S_CATEGORIES
from babyvlm.benchmarks import (BABYLMMS_COUNTS, BABYLMMS_FILES, BABYLMMS_HEADERS, BabyLMMSFormatError, CaptionItem,
                                ImageFileError, LabeledSTrial, LazyImages, VTWTItem, WinogroundItem, babylmms_image_dir,
                                format_inspection, inspect_babylmms, load_babylmms, write_labeled_s_csv)
from babyvlm.assets import load_wordnet
from babyvlm.evaluate import (EvalConfig, WINOGROUND_CHANCE, evaluate_captioning, evaluate_labeled_s, evaluate_vtwt,
                              evaluate_winoground, meteor_tokens)

WORDS = dict(first=['read', 'eat', 'hold', 'drop', 'see', 'find', 'hug', 'kick'],
             second=['book', 'ball', 'cup', 'bowl', 'bug', 'toy', 'car', 'bike'])


def _img(path: Path, k: int):
    "A tiny JPEG whose pixels differ from every other file's (random noise seeded by k)."
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng([k, 99]).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(a).save(path, quality=95)


def _write(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f); w.writerow(header); w.writerows(rows)


def write_synthetic(root: Path, counts=BABYLMMS_COUNTS, images=True, per_cat=5):
    "Complete synthetic babylmms-eval files in the published formats + tiny images in the harness layout."
    root = Path(root); k = 0
    # Labeled-S: 4 rows per trial, target first, foils of other categories; images reused within a category.
    rng = np.random.default_rng(0); rows = []
    n_per = counts['labeled_s'] // len(LABELED_S_CATEGORIES)
    for t in range(counts['labeled_s']):
        c = LABELED_S_CATEGORIES[min(t // n_per, len(LABELED_S_CATEGORIES) - 1)]
        foils = rng.choice([o for o in LABELED_S_CATEGORIES if o != c], 3, replace=False)
        for cat in [c, *foils]: rows.append([t, c, cat, f"{cat}/img_{int(rng.integers(per_cat))}.jpeg"])
    _write(root/'labeled_s/labeled_s.csv', BABYLMMS_HEADERS['labeled_s'], rows)
    if images:
        for cat in LABELED_S_CATEGORIES:
            for i in range(per_cat): _img(babylmms_image_dir(root, 'labeled_s')/cat/f'img_{i}.jpeg', k); k += 1
    # VTWT: 500 differ in the first word, 84 in the second, 383 in both (scaled if counts are smaller).
    n = counts['vtwt']; n1, n2 = round(n*500/967), round(n*84/967)
    rows = []
    for i in range(n):
        a, b = WORDS['first'][i % 8], WORDS['second'][(i // 8) % 8]
        a2, b2 = WORDS['first'][(i + 1) % 8], WORDS['second'][(i // 8 + 1) % 8]
        neg = f"{a2} {b}" if i < n1 else (f"{a} {b2}" if i < n1 + n2 else f"{a2} {b2}")
        rows.append([f"S_v{i:04d}_00.jpg", f"{a} {b}", neg])
        if images: _img(babylmms_image_dir(root, 'vtwt')/rows[-1][0], k); k += 1
    _write(root/'vtwt/vtwt.csv', BABYLMMS_HEADERS['vtwt'], rows)
    # Baby Winoground: 2 rows per instance, positive then negative.
    rows = []
    for i in range(counts['baby_winoground']):
        p, q = f"{WORDS['first'][i % 8]} {WORDS['second'][i % 7]}", f"{WORDS['first'][(i + 3) % 8]} {WORDS['second'][(i + 2) % 7]}"
        for tag, name in (('positive', f"S_w{i:04d}.jpg"), ('negative', f"S_w{i:04d}_neg.jpeg")):
            rows.append([i, p, q, name, tag])
            if images: _img(babylmms_image_dir(root, 'baby_winoground', tag)/name, k); k += 1
    _write(root/'baby_winoground/baby_winoground.csv', BABYLMMS_HEADERS['baby_winoground'], rows)
    # SAYCam Caption: texts with commas get quoted by the csv writer, as in the published file.
    rows = []
    for i in range(counts['saycam_caption']):
        text = [f"look at the {WORDS['second'][i % 8]} .", f"there is a {WORDS['second'][i % 8]} , a cup , and a toy .",
                f"who 's behind the {WORDS['second'][i % 8]} ?"][i % 3]
        rows.append([f"S_c{i:04d}.jpg", text])
        if images: _img(babylmms_image_dir(root, 'saycam_caption')/rows[-1][0], k); k += 1
    _write(root/'SAYCam_caption/SAYCam_caption.csv', BABYLMMS_HEADERS['saycam_caption'], rows)
    return root


@pytest.fixture(scope='module')
def full(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp('babylmms'))


def test_full_counts(full):
    bm = load_babylmms(full, full)
    assert {k: len(v) for k, v in bm.items()} == BABYLMMS_COUNTS
    assert all(isinstance(t, LabeledSTrial) and isinstance(t.images, LazyImages) for t in bm['labeled_s'])
    assert all(t.target == 0 and t.categories[0] == t.target_category for t in bm['labeled_s'])
    kinds = [it.kind for it in bm['vtwt']]
    assert (kinds.count('first'), kinds.count('second'), kinds.count('both')) == (500, 84, 383)
    assert all(isinstance(it, WinogroundItem) for it in bm['baby_winoground'])
    assert bm['baby_winoground'][3].images.sources[1] == full/'baby_winoground/negative_images/S_w0003_neg.jpeg'
    assert bm['saycam_caption'][1].references == ['there is a ball , a cup , and a toy .']
    assert bm['labeled_s'][5].images[2].size == (6, 6)
    ins = inspect_babylmms(full, full)
    assert {k: (v['n_items'], v['n_missing_images'], v['error']) for k, v in ins.items()} == \
        {k: (n, 0, None) for k, n in BABYLMMS_COUNTS.items()}
    assert ins['vtwt']['kinds'] == {'first': 500, 'second': 84, 'both': 383, 'other': 0}
    assert len(ins['labeled_s']['categories']) == 22
    txt = format_inspection(ins)
    assert 'labeled_s        ok: 2200 items (paper: 2200)' in txt and 'first 500, second 84, both 383' in txt


def test_selected_benchmarks_and_side_by_side_csvs(full, tmp_path):
    flat = tmp_path/'flat'; flat.mkdir()
    for name, (folder, fname) in BABYLMMS_FILES.items(): shutil.copy(full/folder/fname, flat/fname)
    bm = load_babylmms(flat, full, ['saycam_caption', 'vtwt'])
    assert list(bm) == ['saycam_caption', 'vtwt'] and len(bm['vtwt']) == 967
    with pytest.raises(ValueError, match=r"unknown babylmms-eval benchmark\(s\) \['winoground'\]"):
        load_babylmms(flat, full, ['winoground'])
    with pytest.raises(FileNotFoundError, match='no vtwt.csv in'):
        load_babylmms(tmp_path/'empty', full, ['vtwt'])


@pytest.mark.skipif(shared_dir() is None or not (shared_dir()/'reference/babylmms_eval_format').is_dir(),
                    reason='needs shared/reference/babylmms_eval_format')
def test_published_excerpts(tmp_path):
    "The 20-row excerpts of the real files load as they are (CSV folder read-only, images generated)."
    ref = shared_dir()/'reference/babylmms_eval_format'
    k = 0
    for name, (folder, fname) in BABYLMMS_FILES.items():
        with open(ref/fname, newline='') as f:
            for d in csv.DictReader(f):
                _img(babylmms_image_dir(tmp_path, name, d.get('image_tag', ''))/d['image'], k); k += 1
    bm = load_babylmms(ref, tmp_path)
    assert {k: len(v) for k, v in bm.items()} == {'labeled_s': 5, 'vtwt': 20, 'baby_winoground': 10, 'saycam_caption': 20}
    assert bm['labeled_s'][0].categories == ['ball', 'basket', 'puzzle', 'chair']
    assert bm['vtwt'][1].kind == 'first' and bm['vtwt'][8].kind == 'second' and bm['vtwt'][0].kind == 'both'
    assert bm['baby_winoground'][7].phrases == ['happy bug', 'sad bug']
    caps = [it.references[0] for it in bm['saycam_caption']]
    assert caps[2] == 'there is a queen , a rabbit , a shoe , and a toy .'
    assert caps[9] == '" she said they shoud blow bubbles . "'
    assert meteor_tokens(caps[9]) == ['``', 'she', 'said', 'they', 'shoud', 'blow', 'bubbles', '.', '``']  # the Treebank rules read a quote after a space as opening
    assert inspect_babylmms(ref, tmp_path)['labeled_s']['n_items'] == 5


def test_missing_images_one_error(full, tmp_path):
    root = write_synthetic(tmp_path/'r', counts=dict(labeled_s=22, vtwt=10, baby_winoground=4, saycam_caption=3), per_cat=1)
    for p in [root/'labeled_s/images/ball/img_0.jpeg', root/'vtwt/images/S_v0003_00.jpg',
              root/'baby_winoground/negative_images/S_w0001_neg.jpeg']: p.unlink()
    with pytest.raises(ImageFileError) as e: load_babylmms(root, root)
    msg = str(e.value)
    assert '3 benchmark image(s) missing' in msg and 'labeled_s: 1, vtwt: 1, baby_winoground: 1' in msg
    assert 'ball/img_0.jpeg' in msg and 'S_w0001_neg.jpeg' in msg
    ins = inspect_babylmms(root, root)   # never raises
    assert (ins['vtwt']['n_missing_images'], ins['saycam_caption']['n_missing_images']) == (1, 0)
    assert 'missing images' in format_inspection(ins)
    # a corrupt file is found when it is decoded, and named
    (root/'vtwt/images/S_v0004_00.jpg').write_bytes(b'\xff\xd8 broken')
    bad = VTWTItem('4', root/'vtwt/images/S_v0004_00.jpg', 'a b', 'c b')
    class Decoding:
        def score(self, images, texts): return np.array([float(im.size[0]) for im in images])
    with pytest.raises(ImageFileError, match='S_v0004_00.jpg cannot be decoded'):
        evaluate_vtwt(Decoding(), [bad])


def _small(tmp_path):
    return write_synthetic(tmp_path/'s', counts=dict(labeled_s=22, vtwt=6, baby_winoground=3, saycam_caption=3), images=False)


def _edit(path: Path, fn):
    lines = path.read_text().splitlines(); fn(lines); path.write_text('\n'.join(lines) + '\n')


@pytest.mark.parametrize('name,edit,err', [
    ('labeled_s', lambda L: L.pop(4), r'labeled_s.csv:2: trial 0 has 3 rows \(lines \[2, 3, 4\]\), expected 4'),
    ('labeled_s', lambda L: L.insert(5, L[4]), r'labeled_s.csv:2: trial 0 has 5 rows'),
    ('labeled_s', lambda L: L.__setitem__(1, L[1].replace(',ball,ball,', ',ball,cat,')),
     r'labeled_s.csv:2: trial 0 has 0 rows whose real_category is the target'),
    ('labeled_s', lambda L: L.__setitem__(3, '0,ball,ball,ball/img_9.jpeg'), r'trial 0 has 2 rows whose real_category'),
    ('labeled_s', lambda L: L.__setitem__(3, L[3].replace('0,ball,', '0,cat,', 1)), r'labeled_s.csv:4: trial 0 asks for'),
    ('labeled_s', lambda L: L.__setitem__(0, 'trial_id,target,real_category,image'),
     r"labeled_s.csv:1: missing column\(s\) \['target_category'\]"),
    ('labeled_s', lambda L: L.__setitem__(2, L[2] + ',extra'), r'labeled_s.csv:3: expected 4 fields'),
    ('vtwt', lambda L: L.__setitem__(3, 'S_x.jpg,read book,read book'),
     r'vtwt.csv:4: VTWT item 2: the positive and negative phrases are the same'),
    ('vtwt', lambda L: L.__setitem__(2, 'S_x.jpg,,eat book'), r"vtwt.csv:3: empty field\(s\) \['positive_phrase'\]"),
    ('baby_winoground', lambda L: L.__setitem__(2, L[2].replace(',negative', ',edited')),
     r"baby_winoground.csv:3: unknown image_tag 'edited'"),
    ('baby_winoground', lambda L: L.__setitem__(2, L[2].replace(',negative', ',positive')),
     r"instance 0 has rows tagged \['positive', 'positive'\]"),
    ('baby_winoground', lambda L: L.pop(2), r'baby_winoground.csv:2: instance 0 has rows tagged \[.positive.\]'),
    ('baby_winoground', lambda L: L.__setitem__(2, L[2].replace('read', 'kick', 1)),
     r'baby_winoground.csv:3: instance 0 has other phrases here than on line 2'),
    ('saycam_caption', lambda L: L.__setitem__(2, 'S_c.jpg,"unclosed, text'), r'SAYCam_caption.csv:3'),
    ('saycam_caption', lambda L: L.clear(), r'SAYCam_caption.csv: the file is empty'),
])
def test_malformed_rows_name_file_and_line(tmp_path, name, edit, err):
    root = _small(tmp_path)
    p = root/BABYLMMS_FILES[name][0]/BABYLMMS_FILES[name][1]
    _edit(p, edit)
    with pytest.raises(BabyLMMSFormatError, match=err): load_babylmms(root, root, [name])
    assert inspect_babylmms(root, root, [name])[name]['error']   # reported, not raised


def test_write_labeled_s_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    trials = [LabeledSTrial(str(t), 'cat', [Image.new('RGB', (5, 5), tuple(int(x) for x in rng.integers(0, 255, 3))) for _ in range(4)],
                            ['ball', 'cat', 'car', 'hand'], 1) for t in range(3)]
    write_labeled_s_csv(trials, tmp_path/'labeled_s')
    back = load_babylmms(tmp_path, tmp_path, ['labeled_s'])['labeled_s']
    assert [(b.trial_id, b.target_category, b.categories[b.target]) for b in back] == [(str(t), 'cat', 'cat') for t in range(3)]
    assert sorted(back[0].categories) == sorted(trials[0].categories)


def _key(im): return hashlib.sha256(im.tobytes()).hexdigest()


def test_oracle_gets_everything_right_on_loaded_items(full):
    "A scorer that knows the answers (it recognises each decoded file) scores 1.0 on every choice metric."
    bm = load_babylmms(full, full)
    answer = {}   # (image key, text) -> 1 for the right pairs
    for t in bm['labeled_s']:
        for src, c in zip(t.images.sources, t.categories): answer[(_key(LazyImages([src])[0]), c)] = 1.0
    for it in bm['vtwt']: answer[(_key(LazyImages([it.image])[0]), it.positive)] = 1.0
    for it in bm['baby_winoground']:
        for src, ph in zip(it.images.sources, it.phrases): answer[(_key(LazyImages([src])[0]), ph)] = 1.0

    class Oracle:
        def score(self, images, texts):
            out = []
            for i in range(0, len(images), 97):   # batches, as a real scorer would
                out += [answer.get((_key(im), t), 0.0) for im, t in zip(images[i:i + 97], texts[i:i + 97])]
            return np.array(out)
    cfg = EvalConfig(n_boot=100)
    assert evaluate_labeled_s(Oracle(), bm['labeled_s'], cfg)[0]['accuracy'] == 1.0
    mv = evaluate_vtwt(Oracle(), bm['vtwt'], cfg)[0]
    assert mv['accuracy'] == 1.0 and all(b['accuracy'] == 1.0 for b in mv['per_kind'].values())
    mw = evaluate_winoground(Oracle(), bm['baby_winoground'], cfg)[0]
    assert [mw[k]['accuracy'] for k in WINOGROUND_CHANCE] == [1.0] * 5 and mw['n_items'] == 365

    ref_of = {_key(LazyImages([it.image])[0]): it.references[0] for it in bm['saycam_caption']}
    gen = lambda ims: [ref_of[_key(im)] for im in ims]
    mc, pc = evaluate_captioning(gen, bm['saycam_caption'], cfg, wordnet=load_wordnet(fetch=True))
    # METEOR of a perfect caption is 1 - 0.5/m^3 (one chunk of m words), the maximum possible
    best = np.mean([1 - 0.5 / len(meteor_tokens(it.references[0]))**3 for it in bm['saycam_caption']])
    assert abs(mc['meteor'] - best) < 1e-12 and mc['n_items'] == 294


def test_a_contrastive_model_runs_on_files_at_any_batch_size(tmp_path):
    "Path-backed items go through `evaluate` (ContrastiveScorer slicing a LazyImages); the batch size changes nothing."
    from babyvlm.core import seed_everything
    from babyvlm.text import build_vocab
    from babyvlm.models.contrastive import ContrastiveConfig, create_contrastive
    from babyvlm.evaluate import evaluate
    root = write_synthetic(tmp_path, counts=dict(labeled_s=22, vtwt=12, baby_winoground=6, saycam_caption=3), per_cat=2)
    bm = load_babylmms(root, root, ['labeled_s', 'vtwt', 'baby_winoground'])
    seed_everything(0)
    vocab = build_vocab([' '.join(LABELED_S_CATEGORIES + WORDS['first'] + WORDS['second'])])
    model = create_contrastive(ContrastiveConfig(image_size=32), vocab)
    r64 = evaluate(model, vocab, bm, EvalConfig(batch_size=64, n_boot=50), out_dir=tmp_path/'out')
    r1 = evaluate(model, vocab, bm, EvalConfig(batch_size=1, n_boot=50))
    assert r1 == r64 and r64['labeled_s']['n_trials'] == 22 and r64['baby_winoground']['n_items'] == 6
    assert (tmp_path/'out/vtwt_predictions.jsonl').read_text().count('S_v0003_00.jpg') == 1


def test_cli_inspect_reports_counts_and_missing_images(full, tmp_path):
    "`babyvlm benchmarks inspect` on a complete copy exits 0; with one image gone it exits 1 and names it."
    import subprocess, sys, shutil
    exe = str(Path(sys.executable).parent/'babyvlm')
    csv_dir = img_dir = Path(full)  # the synthetic copy keeps CSVs and images in the harness's dataset/ layout
    r = subprocess.run([exe, 'benchmarks', 'inspect', '--babylmms', str(csv_dir), '--images', str(img_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for n in ('2200', '967', '365', '294'): assert n in r.stdout
    copy = tmp_path/'images'; shutil.copytree(img_dir, copy)
    gone = sorted((copy/'vtwt').rglob('*.jp*g'))[0]; gone.unlink()
    r = subprocess.run([exe, 'benchmarks', 'inspect', '--babylmms', str(csv_dir), '--images', str(copy)], capture_output=True, text=True)
    assert r.returncode == 1 and '1 missing' in r.stdout and gone.name in r.stdout, r.stdout


def test_cli_evaluate_scores_a_run_folder_on_item_files(tmp_path):
    """`babyvlm evaluate --run DIR --babylmms ... --images ...` finds the run's family (a folder trained through the registry),
    writes per-benchmark metrics and predictions, and a summary with the family, the run, how captions are made and the
    blind and text-prior controls; with the run's training utterances those are the candidates and the prior's corpus."""
    import json, subprocess, sys
    from babyvlm.train import TrainConfig
    from babyvlm.families import ContrastiveParams, get_family, score_run
    from babyvlm.models.contrastive import ContrastiveConfig
    from babyvlm.testing import toy_pairs
    root = write_synthetic(tmp_path/'bm', counts=dict(labeled_s=22, vtwt=12, baby_winoground=6, saycam_caption=3), per_cat=2)
    tr, va = toy_pairs(32, seed=0), toy_pairs(16, seed=1)
    cfg = TrainConfig(max_steps=2, batch_size=16, warmup_steps=1, eval_every=2, ckpt_every=2, val_batch_size=16, progress=False,
                      tensorboard=False)
    get_family('contrastive').train(ContrastiveParams(ContrastiveConfig(image_size=32), cfg), tr, va, tmp_path/'run')
    exe = str(Path(sys.executable).parent/'babyvlm')
    r = subprocess.run([exe, 'evaluate', '--run', str(tmp_path/'run'), '--babylmms', str(root), '--images', str(root),
                        '--out', str(tmp_path/'out')], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((tmp_path/'out/metrics.json').read_text())
    bench = {'labeled_s', 'vtwt', 'baby_winoground', 'saycam_caption'}
    assert set(m) == bench | {'family', 'run', 'caption_kind', 'controls', 'ties'}, sorted(m)
    assert m['ties'] == 'strict' and m['vtwt']['ties'] == 'strict'   # the default tie rule, recorded
    assert (m['family'], m['run'], m['caption_kind']) == ('contrastive', str(tmp_path/'run'), 'retrieved')
    assert m['vtwt']['n_items'] == 12 and m['labeled_s']['n_trials'] == 22 and m['saycam_caption']['n_items'] == 3
    # the controls of the benchmarks where a model without its image is informative
    assert sorted(m['controls']) == ['blind', 'text_prior']
    assert set(m['controls']['blind']) == set(m['controls']['text_prior']) == {'vtwt', 'baby_winoground', 'saycam_caption'}
    assert {p.name for p in (tmp_path/'out').iterdir()} == {'metrics.json', 'controls'} | {f'{n}_{k}' for n in bench for k in ('metrics.json', 'predictions.jsonl')}
    # the controls' per-item predictions, for paired comparisons (babyvlm.claims)
    for c in ('blind', 'text_prior'):
        assert {p.name for p in (tmp_path/'out'/'controls'/c).iterdir()} == {f'{n}_{k}' for n in m['controls'][c] for k in ('metrics.json', 'predictions.jsonl')}
    assert len((tmp_path/'out/labeled_s_predictions.jsonl').read_text().splitlines()) == 22
    assert 'labeled_s' in r.stdout and 'baby_winoground' in r.stdout and 'blind' in r.stdout
    # no train_utterances.json: captions are retrieved from the benchmark's own references, and the CLI says so
    assert "no train_utterances.json" in r.stderr
    refs = [json.loads(l)['prediction'] for l in (tmp_path/'out/saycam_caption_predictions.jsonl').read_text().splitlines()]
    bm = load_babylmms(root, root)
    assert set(refs) <= {x for it in bm['saycam_caption'] for x in it.references}
    # the same numbers as the registry's own `score_run` on the loaded run (the CLI adds nothing of its own)
    loaded = get_family('contrastive').load(tmp_path/'run')
    res, _, ctl = score_run(loaded, bm, EvalConfig(), candidates=sorted({x for it in bm['saycam_caption'] for x in it.references}))
    from babyvlm.evaluate import _stable   # metrics.json holds the numbers as write_results rounds them
    assert {k: m[k] for k in bench} == _stable(res) and m['controls'] == _stable(ctl)
    # with the run's training utterances (as `babyvlm train` leaves them): they are the candidates and the prior's corpus
    (tmp_path/'run'/'train_utterances.json').write_text(json.dumps(list(tr['text'])))
    r = subprocess.run([exe, 'evaluate', '--run', str(tmp_path/'run'), '--babylmms', str(root), '--images', str(root),
                        '--benchmarks', 'saycam_caption', 'vtwt', '--batch-size', '5', '--out', str(tmp_path/'out2')],
                       capture_output=True, text=True)
    assert r.returncode == 0 and 'no train_utterances.json' not in r.stderr, r.stdout + r.stderr
    m2 = json.loads((tmp_path/'out2/metrics.json').read_text())
    assert set(m2) == {'saycam_caption', 'vtwt', 'family', 'run', 'caption_kind', 'controls', 'ties'}
    assert m2['vtwt'] == m['vtwt']   # another batch size: the same scores
    caps = [json.loads(l)['prediction'] for l in (tmp_path/'out2/saycam_caption_predictions.jsonl').read_text().splitlines()]
    assert set(caps) <= set(tr['text'])
    r = subprocess.run([exe, 'evaluate', '--run', str(tmp_path/'run'), '--babylmms', str(root), '--out', str(tmp_path/'o2')],
                       capture_output=True, text=True)
    assert r.returncode == 2 and '--images' in r.stderr
