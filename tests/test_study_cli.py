"""The study's command line (help, a misspelt key, the exit code of a failed run), its families and run names, and a
study of its own with a condition made by the transfer pipeline (the session's tiny study: tests/test_study.py)."""
import json, subprocess, sys
from pathlib import Path
import pytest
from babyvlm.study import run_study, load_params, run_dir

BIN = Path(sys.executable).parent
from conftest import TINY, SHORT_CVCL   # the tiny study's overrides (the fixture `params_root` lives in conftest.py)


def test_cli_help_explains_options():
    r = subprocess.run([str(BIN/'babyvlm'), 'study', '--help'], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ['--profile', '--conditions', '--seeds', '--set', '--out', '--no-report']: assert opt in r.stdout


def test_cli_rejects_unknown_key_naming_it(params_root):
    r = subprocess.run([str(BIN/'babyvlm'), 'study', '--profile', 'quick', '--set', 'world.image_sise=32'],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown key 'world.image_sise'" in r.stderr and 'image_size' in r.stderr


def test_cli_exits_nonzero_when_a_run_fails(params_root, tmp_path):
    env = {**__import__('os').environ, 'BABYVLM_PARAMS': str(params_root)}
    r = subprocess.run([str(BIN/'babyvlm'), 'study', '--profile', 'quick', '--conditions', 'broken', '--no-report',
                        '--out', str(tmp_path)] + sum([['--set', o] for o in TINY], []), capture_output=True, text=True, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'FAILED' in r.stderr and 'broken/0' in r.stderr


def test_families_and_run_names():
    "A condition that sets its family runs only that; the others run every family of the profile, in named folders."
    from babyvlm.study import condition_families, run_name
    from babyvlm.core import ParamsError
    p = load_params('default', 'home', 0)
    assert condition_families(p, 'home') == ['contrastive', 'generative', 'generative_llama', 'hybrid']
    assert condition_families(p, 'reference') == ['reference']
    assert [run_name('home', f) for f in ('contrastive', 'generative', 'reference')] == ['home', 'home-generative', 'home']
    with pytest.raises(ParamsError, match="family 'diffusion' is unknown"):
        load_params('quick', 'home', 0, ['family=diffusion'])
    # phase sections given in part keep their phase defaults, and every training section takes the run's seed
    q = load_params('quick', 'home', 7, ['generative.projector.max_steps=5'])
    assert q.generative.projector.max_steps == 5 and q.generative.projector.seed == 7 and q.generative.projector.betas == (0.9, 0.95)
    assert q.generative.language.seed == 7 and q.generative.ssl_train.seed == 7 and q.contrastive.train.seed == 7
    assert q.hybrid.train.seed == 7 and q.reference.train.seed == 7


def test_transfer_conditions_load():
    for c in ['home_filtered', 'home_transferred', 'home_random', 'transferred']:
        p = load_params('default', c, 0)
        assert set(p.data.sources) <= {'home_filtered', 'transferred', 'random'}
    assert load_params('default', 'home_transferred', 0).transfer.filter_quantile == 0.3


def test_transfer_condition_runs_end_to_end(tmp_path, params_root, monkeypatch):
    """A condition made by the transfer pipeline trains, keeps the pipeline's report, and reaches the ablation table.
    Two runs at a time: the pipeline is built in the study process while the run that does not need it goes ahead."""
    monkeypatch.setenv('BABYVLM_PARAMS', str(params_root))   # restored afterwards, whatever was set before
    log = []
    res = run_study('quick', conditions=['home_transferred', 'home'], seeds=[0],
                    overrides=TINY + ['families=[contrastive]', 'transfer.reference_steps=50', 'jobs=2'] + SHORT_CVCL, out_root=tmp_path,
                    echo=log.append)
    assert res['ok'], res['runs']
    assert [r['condition'] for r in res['runs']] == ['home_transferred', 'home']   # statuses in run order
    assert any('2 at a time, 1 thread(s) each' in m for m in log), log
    ready = next(i for i, m in enumerate(log) if m.startswith('[study] transfer pipeline ready'))
    assert ready < log.index('[study] run home_transferred seed 0 ...'), log
    d = run_dir(res['study_dir'], 'home_transferred', 0)
    rep = json.loads((d/'transfer_report.json').read_text())
    c = rep['counts']
    assert c['home_kept'] < c['home_in'] and c['transferred'] == c['random'] > 0
    m = json.loads((d/'metrics.json').read_text())
    assert m['n_train_pairs'] == c['home_kept'] + c['transferred']
    html = (res['study_dir']/'report.html').read_text()
    assert 'CVCL, home_transferred' in html and 'Pairs kept by each step' in html
    # the report's leakage audit was computed while the runs went on (queued after them), and the report read it back
    audited = [m for m in log if m.startswith('[study] leakage audit of world')]
    assert len(audited) == 1 and 'ready' in audited[0], log
    assert log.index(audited[0]) < log.index('[study] report'), log
    assert 'training images; near duplicate = cosine' in html   # format_audit's table, printed by the report
