"""babyvlm inside the paper's harness. The export of the embedded benchmarks round-trips through the loader (any venv);
with lmms-eval installed (`make test-lmms`: .venv-lmms, lmms-eval 0.7.3 from PyPI) the real harness runs the authors'
task files, read unchanged from ../shared/reference/babylmms_eval_tasks through --include_path, on a tiny trained
BabyLLaVA (and a tiny CVCL, whose losses are minus its cosines) and the exported items, and agrees item by item with `babyvlm evaluate --ties harness`: the same choice on
every item, the same accuracies, the losses within 1e-4, the same captions. Two differences are the harness's own and
named here: its default batch of one request at a time (float32 rounding: losses within ~1.3e-6 of babyvlm's batch
of 64; with `--batch_size 64` the same floats), and its METEOR tokenisation (nltk's Punkt sentence split inside `word_tokenize`, with the empty Punkt model that can
be had offline, `babyvlm.lmms.harness_nltk_data`): on items whose texts have a stop inside them (`tokens_may_differ`)
its METEOR may differ from babyvlm's; everywhere else it is equal.

In plain `make test` (no lmms-eval in .venv) the harness tests skip, saying so; under `make test-lmms`
(BABYVLM_REQUIRE_LMMS=1) a missing lmms-eval or missing task files fail them."""
import importlib.util, json, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from conftest import TINY
from babyvlm.benchmarks import load_babylmms, load_image
from babyvlm.core import shared_dir

ROOT = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get('BABYVLM_REQUIRE_LMMS') == '1'
WORLD = [o for o in TINY if o.startswith('world.')]   # the tiny study's world (cached by the other tests)
TASKS = ('labeled_s', 'vtwt', 'baby_winoground', 'saycam_caption')
GEN = [f'generative.{ph}.{k}={v}' for ph, n in (('ssl_train', 20), ('language', 40), ('projector', 20), ('full', 30))
       for k, v in (('max_steps', n), ('eval_every', 10), ('ckpt_every', 20))]
TOL = 1e-4   # the bound on |harness loss - babyvlm's minus score|
STORED = 1e-6   # babyvlm writes its metrics and per-item scores rounded to 6 decimals (`babyvlm.evaluate.write_results`)


def _cli(*argv, cwd=None, env=None):
    "Run `babyvlm ...` with this interpreter (the venv under test); its output on failure."
    r = subprocess.run([sys.executable, '-m', 'babyvlm.cli', *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, f"babyvlm {' '.join(map(str, argv))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _sets(args):
    return [x for o in args for x in ('--set', o)]


def test_export_round_trips_through_the_loader(tmp_path):
    "`babyvlm benchmarks export` writes the harness layout; `load_babylmms` reads back the world's items, pixels included."
    from babyvlm.study import load_params
    from babyvlm.world import build_world
    from babyvlm.items import build_benchmarks
    _cli('benchmarks', 'export', '--profile', 'quick', *_sets(WORLD), '--limit', '30', '--out', tmp_path/'exp')
    d = tmp_path/'exp'/'dataset'
    for f in ('labeled_s/labeled_s.csv', 'vtwt/vtwt.csv', 'baby_winoground/baby_winoground.csv', 'SAYCam_caption/SAYCam_caption.csv'):
        assert (d/f).is_file(), f
    bench = build_benchmarks(build_world(load_params('quick', overrides=WORLD).world, progress=False), progress=False)
    man = json.loads((tmp_path/'exp'/'babyvlm_export.json').read_text())
    assert {n: m['n_items'] for n, m in man['benchmarks'].items()} == {n: min(30, len(bench[n])) for n in TASKS}
    back = load_babylmms(d, d)
    same = lambda a, b: np.array_equal(np.asarray(load_image(a)), np.asarray(load_image(b)))
    src = {n: bench[n][:30] for n in TASKS}
    assert man['benchmarks']['labeled_s']['ids'] == [t.trial_id for t in src['labeled_s']]
    assert [(t.target_category, t.categories, t.target) for t in back['labeled_s']] == \
           [(t.target_category, list(t.categories), t.target) for t in src['labeled_s']]
    assert all(same(a, b) for t, u in zip(src['labeled_s'], back['labeled_s']) for a, b in zip(t.images, u.images))
    assert [(v.positive, v.negative) for v in back['vtwt']] == [(v.positive, v.negative) for v in src['vtwt']]
    assert all(same(v.image, u.image) for v, u in zip(src['vtwt'], back['vtwt']))
    assert [w.phrases for w in back['baby_winoground']] == [list(w.phrases) for w in src['baby_winoground']]
    assert all(same(a, b) for w, u in zip(src['baby_winoground'], back['baby_winoground']) for a, b in zip(w.images, u.images))
    assert [c.references for c in back['saycam_caption']] == [[c.references[0]] for c in src['saycam_caption']]
    assert all(same(c.image, u.image) for c, u in zip(src['saycam_caption'], back['saycam_caption']))
    out = _cli('benchmarks', 'inspect', '--babylmms', d, '--images', d)
    assert '0 missing' in out and 'ERROR' not in out
    assert (tmp_path/'exp'/'nltk_data'/'corpora'/'wordnet'/'data.noun').is_file()


# ---- the real harness ---------------------------------------------------------------------------------------------

def _need(ok:bool, why:str):
    "Skip (plain `make test`) or fail (`make test-lmms`, BABYVLM_REQUIRE_LMMS=1) when a prerequisite is missing."
    if ok: return
    if REQUIRE: pytest.fail(f"{why} (BABYVLM_REQUIRE_LMMS=1: `make test-lmms` must run the harness)")
    pytest.skip(why)


@pytest.fixture(scope='module')
def harness(tmp_path_factory):
    "A tiny BabyLLaVA, its world's benchmarks exported, scored by lmms-eval (registry and submission) and by babyvlm."
    _need(importlib.util.find_spec('lmms_eval') is not None,
          "lmms-eval is not installed in this venv: `make test-lmms` installs lmms-eval 0.7.3 in .venv-lmms and runs this file")
    tasks_dir = (shared_dir() or ROOT.parent/'shared')/'reference'/'babylmms_eval_tasks'
    _need(all((tasks_dir/t/f'{t}.yaml').is_file() for t in TASKS), f"the authors' task files are not in {tasks_dir}")
    tmp = tmp_path_factory.mktemp('lmms'); t = {}
    t0 = time.time()
    _cli('train', '--profile', 'quick', '--condition', 'home', '--family', 'generative', *_sets(WORLD + GEN), '--out', tmp/'run')
    t['train_s'] = time.time() - t0; t0 = time.time()
    _cli('benchmarks', 'export', '--run', tmp/'run', '--out', tmp/'exp')
    _cli('export-submission', '--run', tmp/'run', '--out', tmp/'sub')
    t['export_s'] = time.time() - t0; t0 = time.time()
    _cli('evaluate', '--run', tmp/'run', '--babylmms', tmp/'exp'/'dataset', '--images', tmp/'exp'/'dataset', '--ties', 'harness',
         '--out', tmp/'ev_files')
    _cli('evaluate', '--run', tmp/'run', '--ties', 'harness', '--out', tmp/'ev_world')
    t['babyvlm_s'] = time.time() - t0; t0 = time.time()
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1',
           'NLTK_DATA': str(tmp/'exp'/'nltk_data'), 'HF_HOME': str(tmp/'hf')}   # nothing is fetched: the CSVs load with `datasets`' csv builder
    lmms_eval = Path(sys.executable).with_name('lmms-eval')
    r = subprocess.run([str(lmms_eval), '--model', 'babyvlm', '--model_args', f"run={tmp/'run'}", '--tasks', ','.join(TASKS),
                        '--include_path', str(tasks_dir), '--output_path', str(tmp/'lmms_registry'), '--log_samples'],
                       cwd=tmp/'exp', capture_output=True, text=True, env=env)
    assert r.returncode == 0 and 'Traceback' not in r.stdout + r.stderr, f"lmms-eval failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    t['lmms_registry_s'] = time.time() - t0; t0 = time.time()
    # again with the run's batch size (64) instead of lmms-eval's default 1, for the choice tasks
    r = subprocess.run([str(lmms_eval), '--model', 'babyvlm', '--model_args', f"run={tmp/'run'}", '--batch_size', '64',
                        '--tasks', ','.join(TASKS[:3]), '--include_path', str(tasks_dir), '--output_path', str(tmp/'lmms_bs64'),
                        '--log_samples'], cwd=tmp/'exp', capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"lmms-eval --batch_size 64 failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    t['lmms_bs64_s'] = time.time() - t0; t0 = time.time()
    # the submission folder through lmms-eval's Python API (model.py imported from the folder, its checkpoint beside it)
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import model\n"
              "from lmms_eval.evaluator import simple_evaluate\n"
              "from lmms_eval.tasks import TaskManager\n"
              "r = simple_evaluate(model=model.BabyVLMSubmission(), tasks=sys.argv[3].split(','), log_samples=True,\n"
              "                    task_manager=TaskManager(include_path=sys.argv[2]))\n"
              "json.dump({k: v for k, v in r['results'].items()}, open(sys.argv[4], 'w'), default=str)\n")
    r = subprocess.run([sys.executable, '-c', script, str(tmp/'sub'), str(tasks_dir), ','.join(TASKS), str(tmp/'sub_results.json')],
                       cwd=tmp/'exp', capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"the submission's model.py failed under lmms-eval:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    t['lmms_submission_s'] = time.time() - t0
    return _collect(tmp, tasks_dir, t)


def _collect(tmp:Path, tasks_dir:Path, timings:dict) -> dict:
    "What the runs in `tmp` wrote: the harness's results and logged samples, babyvlm's predictions and metrics."
    res = next((tmp/'lmms_registry').rglob('*_results.json'))
    samples = {n: [json.loads(l) for l in next((tmp/'lmms_registry').rglob(f'*_samples_{n}.jsonl')).read_text().splitlines()] for n in TASKS}
    for n in TASKS: samples[n].sort(key=lambda s: s['doc_id'])
    preds = lambda d, n: [json.loads(l) for l in (d/f'{n}_predictions.jsonl').read_text().splitlines()]
    return dict(tmp=tmp, tasks_dir=tasks_dir, results=json.loads(res.read_text())['results'], samples=samples,
                sub=json.loads((tmp/'sub_results.json').read_text()), timings=timings,
                files={n: preds(tmp/'ev_files', n) for n in TASKS}, world={n: preds(tmp/'ev_world', n) for n in TASKS},
                metrics={n: json.loads((tmp/'ev_files'/f'{n}_metrics.json').read_text()) for n in TASKS})


def _losses(sample) -> list:
    "The losses of a logged document, one per choice (lmms-eval logs each (loss, is_greedy) pair as strings; one choice: the pair alone)."
    r = sample['filtered_resps']
    return [float(r[0])] if not isinstance(r[0], list) else [float(x[0]) for x in r]


def _report(name, **kw):
    print(f"\n[lmms parity] {name}: " + ', '.join(f"{k}={v}" for k, v in kw.items()))


def test_labeled_s_agrees(harness):
    S, P = harness['samples']['labeled_s'], harness['files']['labeled_s']
    assert len(S) == 4 * len(P) and [s['doc_id'] for s in S] == list(range(len(S)))
    loss = np.array([_losses(s) for s in S]).reshape(-1, 4)
    score = np.array([p['scores'] for p in P])
    diff = np.abs(loss + score).max(); assert diff < TOL, diff
    first_min = loss.argmin(1)   # the authors' aggregation: the first row of lowest loss (strict < over the rows in order)
    assert (first_min == np.array([p['chosen'] for p in P])).all()
    acc = harness['results']['labeled_s']['acc,none']
    assert acc == pytest.approx(np.mean([p['correct'] for p in P]), abs=1e-12)
    assert acc == pytest.approx(harness['metrics']['labeled_s']['accuracy'], abs=STORED)
    assert acc == pytest.approx(np.mean(first_min == np.array([p['target'] for p in P])), abs=1e-12)
    _report('labeled_s', trials=len(P), rows=len(S), equal_choices=int((first_min == [p['chosen'] for p in P]).sum()),
            max_loss_diff=f"{diff:.2e}", accuracy=acc)


def test_vtwt_agrees(harness):
    S, P = harness['samples']['vtwt'], harness['files']['vtwt']
    assert len(S) == len(P)
    loss = np.array([_losses(s) for s in S])
    score = np.array([[p['score_positive'], p['score_negative']] for p in P])
    diff = np.abs(loss + score).max(); assert diff < TOL, diff
    assert [s['acc'] for s in S] == [float(p['correct']) for p in P]   # min(range(2), key=loss) == 0 <=> positive >= negative
    acc = harness['results']['vtwt']['acc,none']
    assert acc == pytest.approx(np.mean([p['correct'] for p in P]), abs=1e-12)
    assert acc == pytest.approx(harness['metrics']['vtwt']['accuracy'], abs=STORED)
    _report('vtwt', items=len(P), equal_choices=sum(s['acc'] == p['correct'] for s, p in zip(S, P)), max_loss_diff=f"{diff:.2e}", accuracy=acc)


def test_baby_winoground_agrees(harness):
    S, P = harness['samples']['baby_winoground'], harness['files']['baby_winoground']
    assert len(S) == 2 * len(P)
    L = np.zeros((len(P), 2, 2))
    for s in S:   # rows: instance k positive (image 0), then negative (image 1); resps: phrase 0, phrase 1
        k, i = s['doc_id'] // 2, s['doc_id'] % 2
        L[k, i] = _losses(s)
    score = np.array([p['scores'] for p in P])
    diff = np.abs(L + score).max(); assert diff < TOL, diff
    m, r = harness['metrics']['baby_winoground'], harness['results']['baby_winoground']
    for ours, theirs in (('text', 'text_score'), ('image', 'image_score'), ('group', 'group_score'),
                         ('positive_context', 'positive_context_group_score'), ('negative_context', 'negative_context_group_score')):
        assert r[f'{theirs},none'] == pytest.approx(m[ours]['accuracy'], abs=1e-6), ours   # the harness averages in float32 (and babyvlm stores 6 decimals)
        assert r[f'{theirs},none'] == pytest.approx(np.mean([p[ours] for p in P]), abs=1e-6)
    _report('baby_winoground', instances=len(P), max_loss_diff=f"{diff:.2e}", group=r['group_score,none'])


def test_saycam_caption_agrees(harness):
    S, P = harness['samples']['saycam_caption'], harness['files']['saycam_caption']
    assert len(S) == len(P)
    assert [s['meteor']['pred'] for s in S] == [p['prediction'].strip() for p in P]   # the same greedy captions
    assert [s['meteor']['gt'] for s in S] == [p['references'][0] for p in P]
    # the harness's METEOR per item: the authors' aggregation (their utils.py, imported from ../shared) on each item alone
    os.environ['NLTK_DATA'] = str(harness['tmp']/'exp'/'nltk_data')
    import nltk.data; nltk.data.path.insert(0, os.environ['NLTK_DATA'])
    spec = importlib.util.spec_from_file_location('saycam_utils', harness['tasks_dir']/'saycam_caption'/'utils.py')
    u = importlib.util.module_from_spec(spec); spec.loader.exec_module(u)
    theirs = np.array([u.saycam_caption_aggregation_result([s['meteor']]) for s in S])
    assert harness['results']['saycam_caption']['meteor,none'] == pytest.approx(theirs.mean(), abs=1e-12)
    ours = np.array([p['meteor'] for p in P]); flag = np.array([p['tokens_may_differ'] for p in P])
    assert np.abs(theirs - ours)[~flag].max(initial=0) <= STORED / 2 + 1e-12   # same tokens: the same METEOR (babyvlm's to 6 decimals)
    _report('saycam_caption', items=len(P), equal_captions=len(P), tokens_may_differ=int(flag.sum()),
            meteor_differs_on=int((np.abs(theirs - ours) > STORED).sum()), harness_meteor=round(float(theirs.mean()), 4),
            babyvlm_meteor=round(float(ours.mean()), 4))


def test_one_item_at_a_time_is_the_only_float_difference(harness):
    "lmms-eval's default batch size is 1; babyvlm's is the run's (64). With 64 in both, the losses are babyvlm's scores to the digit stored."
    tmp = harness['tmp']
    for n in TASKS[:3]:
        S = sorted([json.loads(l) for l in next((tmp/'lmms_bs64').rglob(f'*_samples_{n}.jsonl')).read_text().splitlines()],
                   key=lambda s: s['doc_id'])
        ones = np.array([_losses(s) for s in harness['samples'][n]]).ravel()
        b64 = np.array([_losses(s) for s in S]).ravel()
        P = harness['files'][n]
        score = np.array([p['scores'] if n != 'vtwt' else [p['score_positive'], p['score_negative']] for p in P]).ravel()
        assert np.abs(b64 + score).max() <= STORED / 2 + 1e-9, n   # the same floats, babyvlm's rounded to 6 decimals
        assert np.abs(ones - b64).max() < TOL, n                   # batch 1 vs 64: float32 rounding only
        _report(f'{n} batch 1 vs 64', max_loss_diff_bs1=f"{np.abs(ones + score).max():.2e}", max_loss_diff_bs64=f"{np.abs(b64 + score).max():.2e}")


@pytest.fixture(scope='module')
def contrastive(harness):
    "A tiny CVCL on the same world and exported items, through lmms-eval (losses = minus cosines) and babyvlm evaluate."
    tmp, tasks_dir = harness['tmp'], harness['tasks_dir']
    _cli('train', '--profile', 'quick', '--condition', 'home', '--family', 'contrastive',
         *_sets(WORLD + [o for o in TINY if o.startswith('contrastive.')]), '--out', tmp/'run_clip')
    _cli('evaluate', '--run', tmp/'run_clip', '--babylmms', tmp/'exp'/'dataset', '--images', tmp/'exp'/'dataset', '--ties', 'harness',
         '--out', tmp/'ev_clip')
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'NLTK_DATA': str(tmp/'exp'/'nltk_data'), 'HF_HOME': str(tmp/'hf')}
    r = subprocess.run([str(Path(sys.executable).with_name('lmms-eval')), '--model', 'babyvlm', '--model_args', f"run={tmp/'run_clip'}",
                        '--batch_size', '64', '--tasks', ','.join(TASKS), '--include_path', str(tasks_dir),
                        '--output_path', str(tmp/'lmms_clip'), '--log_samples'], cwd=tmp/'exp', capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"lmms-eval (CVCL) failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    samples = {n: sorted([json.loads(l) for l in next((tmp/'lmms_clip').rglob(f'*_samples_{n}.jsonl')).read_text().splitlines()],
                         key=lambda s: s['doc_id']) for n in TASKS}
    return dict(results=json.loads(next((tmp/'lmms_clip').rglob('*_results.json')).read_text())['results'], samples=samples,
                files={n: [json.loads(l) for l in (tmp/'ev_clip'/f'{n}_predictions.jsonl').read_text().splitlines()] for n in TASKS})


def test_a_contrastive_family_agrees_through_minus_cosine(contrastive):
    "CVCL: the harness's loss is minus the cosine; its lowest-loss choices are babyvlm's --ties harness choices."
    S, P, R = contrastive['samples'], contrastive['files'], contrastive['results']
    ls = np.array([_losses(s) for s in S['labeled_s']]).reshape(-1, 4)
    cos = np.array([p['scores'] for p in P['labeled_s']])
    assert (np.abs(cos) <= 1 + 1e-6).all() and np.abs(ls + cos).max() <= STORED / 2 + 1e-9
    assert (ls.argmin(1) == [p['chosen'] for p in P['labeled_s']]).all()
    assert R['labeled_s']['acc,none'] == pytest.approx(np.mean([p['correct'] for p in P['labeled_s']]), abs=1e-12)
    vt = np.array([_losses(s) for s in S['vtwt']])
    assert np.abs(vt + [[p['score_positive'], p['score_negative']] for p in P['vtwt']]).max() <= STORED / 2 + 1e-9
    assert [s['acc'] for s in S['vtwt']] == [float(p['correct']) for p in P['vtwt']]
    L = np.array([_losses(s) for s in S['baby_winoground']]).reshape(-1, 2, 2)
    assert np.abs(L + np.array([p['scores'] for p in P['baby_winoground']])).max() <= STORED / 2 + 1e-9
    assert R['baby_winoground']['group_score,none'] == pytest.approx(np.mean([p['group'] for p in P['baby_winoground']]), abs=1e-6)
    assert [s['meteor']['pred'] for s in S['saycam_caption']] == [p['prediction'] for p in P['saycam_caption']]   # retrieved
    _report('CVCL (minus cosine)', labeled_s=R['labeled_s']['acc,none'], vtwt=R['vtwt']['acc,none'],
            group=R['baby_winoground']['group_score,none'], max_loss_diff=f"{np.abs(ls + cos).max():.2e}")


def test_the_export_scores_as_the_embedded_world(harness):
    "`babyvlm evaluate --ties harness` on the embedded world and on its export: the same scores, choices and captions."
    F, W = harness['files'], harness['world']
    assert np.abs(np.array([p['scores'] for p in F['labeled_s']]) - [p['scores'] for p in W['labeled_s']]).max() < 1e-9
    assert [p['correct'] for p in F['labeled_s']] == [p['correct'] for p in W['labeled_s']]
    assert [(p['score_positive'], p['score_negative']) == pytest.approx((q['score_positive'], q['score_negative']), abs=1e-9)
            for p, q in zip(F['vtwt'], W['vtwt'])] == [True] * len(F['vtwt'])
    assert np.abs(np.array([p['scores'] for p in F['baby_winoground']]) - [p['scores'] for p in W['baby_winoground']]).max() < 1e-9
    assert [p['prediction'] for p in F['saycam_caption']] == [p['prediction'] for p in W['saycam_caption']]


def test_the_submission_scores_as_the_registered_adapter(harness):
    "The submission folder's model.py (lmms-eval's Python API) gives the same metrics as `--model babyvlm` on the run folder."
    for n in TASKS:
        a, b = harness['results'][n], harness['sub'][n]
        keys = [k for k in a if k.endswith(',none') and 'stderr' not in k]
        assert keys and all(float(a[k]) == pytest.approx(float(b[k]), abs=1e-12) for k in keys), (n, a, b)
    _report('timings', **{k: f"{v:.0f}s" for k, v in harness['timings'].items()})
