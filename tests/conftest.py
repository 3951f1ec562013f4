import os, pathlib, shutil, sys
import pytest
ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('BABYVLM_THREADS', '2')

# the quick profile made smaller still, so the whole path runs in a couple of minutes on 2 cores
TINY = [f'{f}.train.{k}={v}' for f in ('contrastive', 'hybrid', 'reference') for k, v in (('max_steps', 30), ('eval_every', 15), ('ckpt_every', 15))] + [
        'eval.n_boot=200'] + [
        f'{f}.{ph}.{k}={v}' for f in ('generative', 'generative_llama') for ph, n in (('ssl_train', 20), ('language', 40), ('projector', 20), ('full', 30))
        for k, v in (('max_steps', n), ('eval_every', 10), ('ckpt_every', 20))] + [
        'eval.n_boot=200',
        'world.labeled_s_per_category=10', 'world.n_vtwt=60', 'world.n_winoground=24', 'world.n_captions=22',
        'world.n_web=200', 'world.real_photo_trials_per_image=1']


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
    shared by tests/test_study.py (runs, metrics, determinism, the CLI) and tests/test_browser.py (its report.html)."""
    from babyvlm.study import run_study
    out = tmp_path_factory.mktemp('outputs')
    saved = os.environ.get('BABYVLM_PARAMS')
    os.environ['BABYVLM_PARAMS'] = str(params_root)   # for the broken condition; restored after
    try:   # one run at a time, with the threads the determinism test's rerun gets (float rounding depends on the thread count)
        return run_study('quick', conditions=['home', 'reference', 'broken'], seeds=[0], overrides=TINY + ['jobs=1'], out_root=out,
                         echo=lambda *a: None)
    finally:
        if saved is None: os.environ.pop('BABYVLM_PARAMS', None)
        else: os.environ['BABYVLM_PARAMS'] = saved
