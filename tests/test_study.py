"The papermill path end to end on the session's tiny study: runs -> metrics -> report, a failed run, `evaluate --run`, a SIGKILL."
import json, subprocess, sys
from pathlib import Path
import pytest
from babyvlm.study import load_params_file, run_dir, collect_runs

BIN = Path(sys.executable).parent
from conftest import TINY   # the tiny study (the fixtures `params_root` and `study` live in conftest.py, shared with test_browser.py and test_determinism.py)


def test_study_writes_runs_and_report(study):
    sd = study['study_dir']
    home = run_dir(sd, 'home', 0)
    st = json.loads((home/'status.json').read_text())
    assert st['status'] == 'ok', st.get('error')
    m = json.loads((home/'metrics.json').read_text())['labeled_s']
    assert 0.0 <= m['ci_low'] <= m['accuracy'] <= m['ci_high'] <= 1.0
    assert m['n'] == 22 * 10 and m['chance'] == 0.25
    assert len(m['per_category']) == 22
    preds = (home/'predictions.jsonl').read_text().splitlines()
    assert len(preds) == m['n']
    p = json.loads(preds[0]); assert {'trial_id', 'chosen', 'correct', 'scores'} <= set(p)
    for f in ['params.yaml', 'provenance.json', 'train_evaluate.ipynb', 'train_log.jsonl']:
        assert (home/f).exists(), f
    prov = json.loads((home/'provenance.json').read_text())
    assert {'git', 'packages', 'world_hash'} <= set(prov)
    assert load_params_file(home/'params.yaml').contrastive.train.max_steps == 30
    html = (sd/'report.html').read_text()
    assert 'Labeled-S' in html and 'broken' in html


def test_every_benchmark_control_and_reference(study):
    "Each run scores all five benchmarks; the blind control and the reference row reach the main table."
    sd = study['study_dir']
    home = json.loads((run_dir(sd, 'home', 0)/'metrics.json').read_text())
    assert home['vtwt']['n_items'] == 60 and home['baby_winoground']['n_items'] == 24
    assert home['saycam_caption']['n_items'] == 22 and home['real_photos']['benchmark'] == 'real_photos'
    assert set(home['vtwt']['per_kind']) <= {'first', 'second', 'both'} and home['vtwt']['per_word_class']
    for ctl in ('blind', 'text_prior'):   # the model without its image (a grey picture for CVCL), and a bigram of the utterances
        c = home['controls'][ctl]
        assert c['baby_winoground']['group']['accuracy'] == 0.0   # one image for both: every image comparison ties
        assert 0.0 <= c['vtwt']['accuracy'] <= 1.0 and c['saycam_caption']['meteor'] >= 0
    gen = json.loads((run_dir(sd, 'home-generative', 0)/'metrics.json').read_text())
    assert gen['family'] == 'generative' and gen['caption_kind'] == 'generated' and 'blind' in gen['controls']
    for f in ['vtwt_predictions.jsonl', 'baby_winoground_predictions.jsonl', 'saycam_caption_predictions.jsonl']:
        assert (run_dir(sd, 'home', 0)/f).exists(), f
    ref = json.loads((run_dir(sd, 'reference', 0)/'metrics.json').read_text())
    assert ref['family'] == 'reference' and 0 <= ref['labeled_s']['accuracy'] <= 1
    assert ref['n_train_pairs'] == 200 + 100   # the web pairs and the world's pretraining pool (world.n_web_pretrain)
    pr = ref['diagnostics']['vision_probe']; assert pr['n_classes'] == 22 and 0 <= pr['accuracy'] <= 1   # its frozen encoder's probe
    html = (sd/'report.html').read_text()
    for s in ['Main table', 'reference (upper bound), reference', 'text prior (no image), home utterances', 'CVCL, home', 'Wino group',
              'BabyLLaVA-GPT2, home', 'BabyLLaVA-Llama, home', 'CoCa hybrid, home', 'with and without its image',
              'Caption METEOR', 'Real photos', 'paper: CVCL', 'paper: CLIP-large', 'Claims', 'Verdicts:',
              'baby models below / above it', 'closest baby model']:
        assert s in html, s


def test_failed_run_is_recorded_and_not_complete(study):
    sd = study['study_dir']
    assert study['ok'] is False
    br = run_dir(sd, 'broken', 0)
    st = json.loads((br/'status.json').read_text())
    assert st['status'] == 'failed' and 'no-such-architecture' in st['error']
    assert not (br/'metrics.json').exists(), 'a failed run must not look complete'
    assert [r['condition'] for r in collect_runs(sd) if r['metrics'] is None] == ['broken']


@pytest.mark.parametrize('run', ['home-generative', 'home-hybrid'])   # (contrastive runs: tests/test_babylmms.py)
def test_cli_evaluate_scores_a_study_run_folder(study, tmp_path, run):
    "`babyvlm evaluate --run` scores a run folder of any family on its own world with the study's scoring code."
    d = run_dir(study['study_dir'], run, 0)
    r = subprocess.run([str(BIN/'babyvlm'), 'evaluate', '--run', str(d), '--out', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    mine, theirs = json.loads((tmp_path/'metrics.json').read_text()), json.loads((d/'metrics.json').read_text())
    for b in ('labeled_s', 'vtwt', 'baby_winoground', 'saycam_caption', 'real_photos'):
        assert mine[b] == theirs[b], b
    assert mine['controls'] == theirs['controls'] and mine['family'] == theirs['family']


def _tree(pid: int) -> list[int]:
    "`pid` and every process below it (from /proc)."
    kids = {}
    for st in Path('/proc').glob('[0-9]*/stat'):
        try: f = st.read_text().rsplit(')', 1)[1].split()
        except OSError: continue
        kids.setdefault(int(f[1]), []).append(int(st.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out


def test_sigkill_mid_run_then_the_same_command_finishes_with_the_same_metrics(study, params_root, tmp_path):
    """The whole study (its process and its kernels) killed with SIGKILL in the middle of training; the same command again
    clears the stale lock, resumes from the last checkpoint and ends with the metrics of the uninterrupted study. (This is
    also CVCL's determinism check: a run made from scratch again, in a new folder, byte-identical; tests/test_determinism.py
    reruns the other families.)"""
    import os, signal, time
    env = {**os.environ, 'BABYVLM_PARAMS': str(params_root)}   # the threads of the session's study (conftest.py): same metrics
    cmd = [str(BIN/'babyvlm'), 'study', '--profile', 'quick', '--conditions', 'home', '--no-report', '--out', str(tmp_path)] + sum(
        [['--set', o] for o in TINY + ['jobs=1', 'families=[contrastive]']], [])
    run = run_dir(tmp_path/'quick', 'home', 0)
    ck = run/'contrastive'/'checkpoints'/'step_15'/'trainer_state.json'
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while not ck.exists() and proc.poll() is None and time.time() - t0 < 900: time.sleep(0.1)
        assert ck.exists(), 'the run never wrote its first checkpoint'
        for pid in reversed(_tree(proc.pid)):
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
        proc.wait()
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run/'metrics.json').exists() and json.loads((run/'status.json').read_text())['status'] == 'running'
    assert json.loads((tmp_path/'quick'/'.study.lock').read_text())['pid'] == proc.pid   # left behind by the killed study
    time.sleep(1)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'removing a stale lock' in r.stdout and f'pid {proc.pid}' in r.stdout, r.stdout
    info = json.loads((run/'run_info.json').read_text())
    assert info['resumed_from'] in (15, 30), info   # resumed from a checkpoint the killed run wrote, not from scratch
    assert (run/'metrics.json').read_bytes() == (run_dir(study['study_dir'], 'home', 0)/'metrics.json').read_bytes()
    assert not (tmp_path/'quick'/'.study.lock').exists()
