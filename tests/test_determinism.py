"Same params + seed => the same metrics, for every family: the session's tiny study made again from scratch."
import json
import pytest
from babyvlm.study import run_study, run_dir
from conftest import TINY   # the tiny study's overrides (the fixture `study` lives in conftest.py)


@pytest.fixture(scope='module')
def rerun(tmp_path_factory):
    """Every run of the session's tiny study but the failing one, again from scratch in a new outputs folder (two at a time,
    as the study). It does not wait for the study: a test asks for `rerun` first, so one worker can make it while another
    makes the study."""
    res = run_study('quick', conditions=['home', 'reference'], seeds=[0], overrides=TINY + ['jobs=2'], report=False,
                    out_root=tmp_path_factory.mktemp('again'), echo=lambda *a: None)
    assert res['ok'], res['runs']
    return res


@pytest.mark.parametrize('family,run', [('contrastive', 'home'), ('generative', 'home-generative'),
                                        ('generative_llama', 'home-generative_llama'), ('hybrid', 'home-hybrid'), ('reference', 'reference')])
def test_same_params_and_seed_give_identical_metrics(rerun, study, family, run):
    "Each family's run, made again from scratch in a new folder: metrics.json must be byte-identical."
    first, again = run_dir(study['study_dir'], run, 0), run_dir(rerun['study_dir'], run, 0)
    assert json.loads((again/'metrics.json').read_text())['family'] == family
    assert (again/'metrics.json').read_bytes() == (first/'metrics.json').read_bytes()
