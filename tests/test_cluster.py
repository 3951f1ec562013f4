"""The cluster executor (`babyvlm study --executor slurm`) against a real single-node Slurm started here
(`babyvlm.testing.local_slurm`); where none can be started within a minute, the same tests run on submitit's
LocalExecutor and say so (a warning, and a line on the terminal). BABYVLM_TEST_NO_SLURM=1 takes the fallback on purpose."""
import contextlib, json, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest
from babyvlm.study import run_study, run_one, load_params, run_dir, collect_runs
from babyvlm.testing import local_slurm, LocalSlurm
from babyvlm.train import _checkpoints   # the engine's own test of a complete checkpoint
from conftest import TINY   # the tiny study's overrides

BIN = Path(sys.executable).parent
# the jobs run with the test process's torch threads (one, tests/conftest.py), so that their metrics can equal the local executor's
STUDY = TINY + ['families=[contrastive]', 'cluster.poll_seconds=1', 'cluster.contrastive.time_min=30', 'cluster.reference.time_min=30',
                f"cluster.contrastive.cpus={os.environ['BABYVLM_THREADS']}", f"cluster.reference.cpus={os.environ['BABYVLM_THREADS']}"]
RUNS = [('contrastive', 'home', 'home'), ('reference', 'reference', 'reference')]   # (family, condition, run folder)


def _say(request, msg:str):
    "A line on the terminal, past pytest's capture (so CI's log says which executor the cluster tests ran on)."
    pm = request.config.pluginmanager
    tr, cap = pm.get_plugin('terminalreporter'), pm.get_plugin('capturemanager')
    with cap.global_and_fixture_disabled() if cap is not None else contextlib.nullcontext():
        if tr is not None: tr.write_line(f"\n[test_cluster] {msg}")
        else: print(f"[test_cluster] {msg}", file=sys.__stderr__)


@pytest.fixture(scope='module')
def executor(request):
    "'slurm' with a real single-node Slurm running (SLURM_CONF set for this process and its children), else 'submitit_local'."
    with contextlib.ExitStack() as stack:
        cl = (LocalSlurm(False, 'BABYVLM_TEST_NO_SLURM is set') if os.environ.get('BABYVLM_TEST_NO_SLURM')
              else stack.enter_context(local_slurm(timeout=60)))
        if cl.ok:
            saved = {k: os.environ.get(k) for k in cl.env}
            os.environ.update(cl.env)
            _say(request, f"a real single-node Slurm is running ({cl.env['SLURM_CONF']}): the cluster tests use --executor slurm")
            yield 'slurm'
            for k, v in saved.items():
                if v is None: os.environ.pop(k, None)
                else: os.environ[k] = v
        else:
            msg = f"no real Slurm could be started ({cl.reason.splitlines()[0]}): the cluster tests run on submitit's local executor"
            _say(request, msg)
            warnings.warn(msg)
            yield 'submitit_local'


@pytest.fixture(scope='module')
def study(executor, tmp_path_factory):
    "The two-condition tiny study through the cluster executor."
    log = []
    res = run_study('quick', conditions=['home', 'reference'], seeds=[0], overrides=STUDY, out_root=tmp_path_factory.mktemp('cluster'),
                    executor=executor, echo=log.append)
    return res, log


def _state(job_id:str) -> str:
    "Slurm's record of a job (slurmctld keeps finished jobs for MinJobAge)."
    r = subprocess.run(['scontrol', 'show', 'job', job_id], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return next(w.split('=')[1] for w in r.stdout.split() if w.startswith('JobState='))


def test_runs_go_through_the_scheduler(study, executor):
    res, log = study
    assert res['ok'], [(r['run_dir'], r['status'], r.get('error')) for r in res['runs']]
    ids = set()
    for _, _, run in RUNS:
        d = run_dir(res['study_dir'], run, 0)
        job, st = json.loads((d/'job.json').read_text()), json.loads((d/'status.json').read_text())
        assert job['executor'] == executor and st['status'] == 'ok'
        assert st['job_id'] == job['job_id'], (st, job)   # the run itself executed inside the job it was submitted as
        ids.add(job['job_id'])
        if executor == 'slurm':
            assert _state(job['job_id']) == 'COMPLETED'   # (a family's array of one run is submitted as a plain job)
    assert len(ids) == 2
    assert any(m.startswith(f'[study] submitted 1 contrastive run(s) to {executor}') for m in log), log
    assert f'[study] {executor}: 0 queued, 0 running, 2 done, 0 failed' in log, log
    html = (res['study_dir']/'report.html').read_text()
    assert 'CVCL, home' in html and 'reference (upper bound)' in html


@pytest.mark.parametrize('family,condition,run', RUNS)
def test_metrics_equal_the_local_executors(study, tmp_path, family, condition, run):
    "The same params and seed on the local executor give byte-identical metrics."
    res, _ = study
    st = run_one(load_params('quick', condition, 0, STUDY + [f'family={family}']), tmp_path/'local')
    assert st['status'] == 'ok', st.get('error')
    assert (tmp_path/'local'/'metrics.json').read_bytes() == (run_dir(res['study_dir'], run, 0)/'metrics.json').read_bytes()


def test_submitting_again_skips_finished_runs(study, executor):
    res, _ = study
    before = {run: (run_dir(res['study_dir'], run, 0)/'job.json').read_text() for _, _, run in RUNS}
    log = []
    again = run_study('quick', conditions=['home', 'reference'], seeds=[0], overrides=STUDY, out_root=res['study_dir'].parent,
                      executor=executor, echo=log.append, report=False)
    assert again['ok'] and not any(m.startswith('[study] submitted') for m in log), log
    assert sum('finished earlier, not submitted again' in m for m in log) == 2, log
    assert before == {run: (run_dir(res['study_dir'], run, 0)/'job.json').read_text() for _, _, run in RUNS}


def _kill(executor:str, job_id:str):
    if executor == 'slurm': subprocess.run(['scancel', job_id], check=True)
    else:   # submitit's local job: the process (tree) whose id it is
        import psutil
        top = psutil.Process(int(job_id))
        for p in [*top.children(recursive=True), top]:
            try: p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess: pass


def test_a_killed_job_is_failed_and_resubmission_finishes_it(study, executor, tmp_path):
    """Cancel the job of a run once it has written a checkpoint: the study records the run as failed with the end of its
    log and exits 1, `babyvlm report` lists it; submitting again resumes it from its checkpoint, here trained under
    `accelerate launch` (cluster.contrastive.processes=1), to the metrics of the uninterrupted run."""
    res, _ = study
    cmd = [str(BIN/'babyvlm'), 'study', '--profile', 'quick', '--conditions', 'home', '--executor', executor, '--out', str(tmp_path),
           '--no-report'] + sum([['--set', o] for o in STUDY], [])
    d = run_dir(tmp_path/'quick', 'home', 0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    # a complete checkpoint, as the engine itself tells one (`.step_N.partial` is renamed to `step_N` once its trainer state is
    # in; waiting for any entry of the folder could cancel the job mid-write, and the resubmission would rightly start afresh)
    while not _checkpoints(d/'contrastive'):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 600, 'no checkpoint after 10 minutes'
        time.sleep(0.5)
    job = json.loads((d/'job.json').read_text())
    _kill(executor, job['job_id'])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert 'FAILED' in err and 'home/0' in err, err
    st = json.loads((d/'status.json').read_text())
    assert st['status'] == 'failed' and st['job_id'] == job['job_id'], st
    assert f"job {job['job_id']} ended" in st['error'] and '--- run.log ---' in st['error'], st['error']
    if executor == 'slurm': assert st['job_state'] == 'CANCELLED', st
    assert not (d/'metrics.json').exists()
    r = subprocess.run([str(BIN/'babyvlm'), 'report', '--profile', 'quick', '--out', str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and '1 runs: 0 ok, 1 failed' in r.stdout, r.stdout + r.stderr
    assert job["job_id"] in (tmp_path/"quick"/"report.html").read_text()
    r = subprocess.run(cmd + ['--set', 'cluster.contrastive.processes=1'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    st2, job2 = json.loads((d/'status.json').read_text()), json.loads((d/'job.json').read_text())
    assert st2['status'] == 'ok' and job2['job_id'] != job['job_id']
    assert (d/'train_launch.log').exists()
    resumed = [json.loads(f.read_text())['resumed_from'] for f in d.glob('**/train_result.json')]
    assert resumed and all(r is not None and 0 < r < 30 for r in resumed), resumed   # it went on from its checkpoint
    assert (d/'metrics.json').read_bytes() == (run_dir(res['study_dir'], 'home', 0)/'metrics.json').read_bytes()


def test_dry_run_prints_one_job_script_per_run():
    r = subprocess.run([str(BIN/'babyvlm'), 'study', '--profile', 'quick', '--executor', 'slurm', '--dry-run',
                        '--set', 'cluster.generative.gpus=1', '--set', 'cluster.generative.partition=gpu'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    scripts = r.stdout.split('# ---- ')[1:]
    names = [s.split(' ')[0].split('/')[-2] for s in scripts]   # in the profile's order (the longest runs first)
    assert names == ['reference', 'home-generative_llama', 'home-generative', 'home', 'home-hybrid'], names
    for s in scripts:
        assert s.count('#!/bin/bash') == 1 and '-m babyvlm.cli run ' in s and '#SBATCH --time=120' in s
    by = dict(zip(names, scripts))
    assert '#SBATCH --gpus-per-node=1' in by['home-generative'] and '#SBATCH --partition=gpu' in by['home-generative']
    assert '--gpus-per-node' not in by['home'] and '--partition' not in by['home'] and '--partition' not in by['home-generative_llama']
    r = subprocess.run([str(BIN/'babyvlm'), 'study', '--profile', 'quick', '--dry-run'], capture_output=True, text=True)
    assert r.returncode == 2 and 'add --executor slurm' in r.stderr
