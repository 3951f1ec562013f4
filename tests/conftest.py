import os, pathlib, shutil, sys
import pytest
ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
# one torch thread per process: `make test` runs two test workers on the 2 cores (pytest-xdist), and results that are
# compared byte for byte (a rerun, `evaluate --run`, the resumed study) need the same thread count as the run they check
os.environ.setdefault('BABYVLM_THREADS', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')

# `make test` runs the tests in two workers (pytest-xdist, `--dist loadfile`: one worker runs a whole file, so its module
# fixtures are built once). The session's tiny study (`study`, below) is made once for both workers: the first one to
# need it builds it under a lock in the session's shared temporary folder, the other waits and reads it. The
# multi-process tests (two processes in lock step over gloo) are marked `serial`: `make test` runs them afterwards, alone.
def pytest_configure(config):
    config.addinivalue_line('markers', 'serial: run after the parallel tests, alone (make test)')


# the quick profile made smaller still, so the whole path runs in a couple of minutes on 2 cores (half its home pairs,
# fewer steps and benchmark items)
# (batches of 32 where the quick profile has 64: the tests check what the path does, not what the models learn)
TINY = [f'{f}.train.{k}={v}' for f in ('contrastive', 'hybrid', 'reference') for k, v in (('max_steps', 30), ('eval_every', 15), ('ckpt_every', 15))] + [
        f'{f}.train.batch_size=32' for f in ('contrastive', 'hybrid')] + [
        'eval.n_boot=200'] + [
        f'{f}.{ph}.{k}={v}' for f in ('generative', 'generative_llama') for ph, n in (('ssl_train', 20), ('language', 40), ('projector', 20), ('full', 30))
        for k, v in (('max_steps', n), ('eval_every', 10), ('ckpt_every', 20), ('batch_size', 32))] + [
        'world.labeled_s_per_category=10', 'world.n_vtwt=60', 'world.n_winoground=24', 'world.n_captions=22',
        'world.n_web=200', 'world.n_web_pretrain=100', 'world.real_photo_trials_per_image=1', 'world.n_home_train=1000', 'world.n_home_val=150']

# CVCL for 10 steps, where only the path matters (the scaling study, the transfer condition end to end)
SHORT_CVCL = ['contrastive.train.max_steps=10', 'contrastive.train.eval_every=5', 'contrastive.train.ckpt_every=10']


def benchmark(name:str):
    "The script benchmarks/<name>.py loaded as a module (the benchmarks are scripts, not a package)."
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT/'benchmarks'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='session')
def params_root(tmp_path_factory):
    "A copy of params/ with an extra condition whose model cannot be built, to exercise failures."
    root = tmp_path_factory.mktemp('params')
    shutil.copytree(ROOT/'params', root, dirs_exist_ok=True)
    (root/'conditions'/'broken.yaml').write_text('description: a model config that does not exist\n'
                                                 'family: contrastive\ndata:\n  sources: [home]\ncontrastive:\n  model:\n    arch: no-such-architecture\n')
    return root


@pytest.fixture(scope='session')
def study(tmp_path_factory, params_root):
    """The tiny study (home with every family, the reference, and a condition that fails), run once per session and
    shared by tests/test_study.py (runs, metrics, the CLI), tests/test_determinism.py and tests/test_browser.py; with
    pytest-xdist, the workers share it too (the first builds it, under a lock)."""
    import json
    from babyvlm.core import build_lock
    from babyvlm.study import run_study
    base = tmp_path_factory.getbasetemp()
    out = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base)/'tiny-study'   # this session's, not an earlier one's
    done = out/'result.json'
    with build_lock(out):
        if not done.exists():
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv('BABYVLM_PARAMS', str(params_root))   # for the broken condition; restored after
                # two runs at a time, one thread each: the threads every rerun that is compared with it gets (float rounding
                # depends on the thread count)
                res = run_study('quick', conditions=['home', 'reference', 'broken'], seeds=[0], overrides=TINY + ['jobs=2'],
                                out_root=out, echo=lambda *a: None)
            done.write_text(json.dumps(res, default=str))
    res = json.loads(done.read_text())
    return {**res, 'study_dir': pathlib.Path(res['study_dir']), 'report': res['report'] and pathlib.Path(res['report'])}
