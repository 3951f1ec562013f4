"""Same params + seed => the same metrics, for every family: the session's tiny study made again from scratch, through
`babyvlm study` run by benchmarks/bench_study.py, whose memory row (issue 17: the peak resident memory of a study, its
process and its kernels together) is checked on that run too."""
import contextlib, io, json
import pytest
from babyvlm.study import run_dir
from conftest import TINY, benchmark   # the tiny study's overrides (the fixture `study` lives in conftest.py)


@pytest.fixture(scope='module')
def rerun(tmp_path_factory):
    """Every run of the session's tiny study but the failing one and CVCL's, again from scratch in a new outputs folder (two
    at a time, as the study), as `bench_study.py --study quick --study-only` runs it. CVCL's rerun is the SIGKILLed study of
    tests/test_study.py: started from scratch, killed, resumed, and byte-identical to the session's. It does not wait for the
    study: a test asks for `rerun` first, so one worker can make it while another makes the study."""
    out = tmp_path_factory.mktemp('again')
    sets = TINY + ['jobs=2', 'conditions=[home,reference]', 'families=[generative,generative_llama,hybrid]']
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = benchmark('bench_study').main(['--study', 'quick', '--study-only', '--study-out', str(out), '--study-no-report'] +
                                  sum([['--study-set', x] for x in sets], []))
    return {'study_dir': out/'quick', 'rows': rows, 'printed': printed.getvalue()}


@pytest.mark.parametrize('family,run', [('generative', 'home-generative'), ('generative_llama', 'home-generative_llama'),
                                        ('hybrid', 'home-hybrid'), ('reference', 'reference')])
def test_same_params_and_seed_give_identical_metrics(rerun, study, family, run):
    "Each family's run, made again from scratch in a new folder: metrics.json must be byte-identical."
    first, again = run_dir(study['study_dir'], run, 0), run_dir(rerun['study_dir'], run, 0)
    assert json.loads((again/'metrics.json').read_text())['family'] == family
    assert (again/'metrics.json').read_bytes() == (first/'metrics.json').read_bytes()


def test_study_memory_row(rerun):
    "--study runs a whole (tiny) study: the table's row gives its peak memory with the kernels (more than the study process alone)."
    (name, workload, mem, secs), = rerun['rows']
    assert name == 'study memory' and 'babyvlm study --profile quick' in workload and '--no-report' in workload and '(exit' not in secs
    assert 'study memory' in rerun['printed'] and 'GiB' in rerun['printed'] and mem in rerun['printed']   # the printed table
    n = int(workload.split('(')[-1].split()[0]); assert n >= 3   # the study process and its two kernels at once
    rss, pss = (float(mem.split(k)[1].split()[0].rstrip(',')) for k in ('RSS ', 'PSS '))
    assert 0.3 < pss <= rss < 8, mem   # a Python with torch is a few hundred MB; the tiny study is far below the 6 GiB target
    assert not (rerun['study_dir']/'report.html').exists()
