"""The study answers its questions: per-item outcomes of real run folders agree with their metrics, a data-scaling
study (two shares x two seeds) reaches the report's scaling section, and the Claims section is computed from the runs
(issue 14)."""
import json, os, re
import numpy as np
import pytest
from conftest import TINY, SHORT_CVCL   # the tiny study's overrides (the fixture `params_root` lives in conftest.py)
from babyvlm.study import run_study, run_dir, collect_runs, load_params
from babyvlm.claims import item_outcomes, pooled_estimate, paired_difference, claims_table, paper_results


@pytest.fixture(scope='module')
def scaling(tmp_path_factory, params_root):
    out = tmp_path_factory.mktemp('scaling')
    cwd, saved = os.getcwd(), os.environ.get('BABYVLM_PARAMS')
    os.environ['BABYVLM_PARAMS'] = str(params_root)
    try:   # two runs at a time (the quick profile's jobs), 10 steps each (the curve's path, not its values, is tested)
        res = run_study('quick', conditions=['scale_50', 'scale_100'], seeds=[0, 1],
                        overrides=TINY + ['families=[contrastive]', 'transfer.reference_steps=50'] + SHORT_CVCL, out_root=out, echo=lambda m: None)
    finally:
        if saved is None: os.environ.pop('BABYVLM_PARAMS', None)
        else: os.environ['BABYVLM_PARAMS'] = saved
    assert res['ok'], res['runs']
    # two runs at a time: papermill's per-kernel changes of the working directory must not leave this process elsewhere
    assert os.getcwd() == cwd
    return res


def test_shares_are_nested_subsets_of_one_size(scaling):
    n = {c: json.loads((run_dir(scaling['study_dir'], c, 0)/'metrics.json').read_text())['n_train_pairs']
         for c in ('scale_50', 'scale_100')}
    assert n['scale_50'] == round(0.5 * n['scale_100'])
    # every share trains the same number of steps (the same samples seen)
    steps = {c: json.loads((run_dir(scaling['study_dir'], c, 0)/'metrics.json').read_text())['train']['steps'] for c in n}
    assert len(set(steps.values())) == 1, steps


def test_item_outcomes_agree_with_the_metrics(scaling):
    runs = [r for r in collect_runs(scaling['study_dir']) if r['metrics']]
    assert len(runs) == 4
    for r in runs:
        for bench, key, acc in (('labeled_s', None, 'accuracy'), ('vtwt', None, 'accuracy'), ('baby_winoground', 'group', None)):
            o = item_outcomes(r['dir'], bench, key)
            m = r['metrics'][bench] if acc else r['metrics'][bench][key]
            assert len(o) == m['n'] and abs(np.mean(list(o.values())) - m['accuracy']) < 1e-6, (r['dir'], bench)
        # the blind control's per-item predictions are written too
        assert len(item_outcomes(r['dir'], 'vtwt', control='blind')) == r['metrics']['vtwt']['n']
    a = {int(r['seed']): item_outcomes(r['dir'], 'labeled_s') for r in runs if r['condition'] == 'scale_100'}
    b = {int(r['seed']): item_outcomes(r['dir'], 'labeled_s') for r in runs if r['condition'] == 'scale_50'}
    d = paired_difference(a, b, n_boot=300)
    assert d['n_seeds'] == 2 and len(d['per_seed']) == 2 and d['ci_low'] <= d['estimate'] <= d['ci_high']
    assert abs(d['estimate'] - (pooled_estimate(a)['estimate'] - pooled_estimate(b)['estimate'])) < 1e-12


def test_report_has_claims_and_the_scaling_curve(scaling):
    html = (scaling['study_dir']/'report.html').read_text()
    assert '<h2 id="Claims">' in html or '>Claims<' in html
    assert 'Verdicts:' in html and 'Not run in this study' in html
    assert 'Data scaling' in html and 'this study trains no family on several shares' not in html
    # both shares appear in the scaling table, for CVCL
    assert re.search(r'CVCL</td>\s*<td>home_filtered</td>\s*<td>0\.5</td>', html), 'the 50% share is missing from the scaling table'
    assert re.search(r'CVCL</td>\s*<td>home_filtered</td>\s*<td>1\.0</td>', html)


def test_claims_are_not_run_without_their_runs(scaling):
    rows = claims_table(collect_runs(scaling['study_dir']), paper_results(), n_boot=100)
    assert rows and all(r['verdict'] == 'not run' and r['missing'] for r in rows)   # scale_* are not the claims' conditions
