"""Data-parallel training on CPU, every family through the registry: 2 processes (gloo, accelerate's `debug_launcher`)
against 1 process with the same global batch. The losses must see the global batch (InfoNCE and NT-Xent all-gather
the embeddings with gradients, the token losses divide by the global token count with `global_mean`) and the result
must not depend on how the batch is split: the same initial weights, the same weights after every task (float32
reduction order only), the same validation losses and selected steps, replicas in sync."""
import json, os
from dataclasses import asdict, replace
from pathlib import Path
import pytest, torch
from babyvlm.core import seed_everything
from babyvlm.testing import toy_pairs
from babyvlm.train import TrainConfig
pytestmark = pytest.mark.serial   # two processes in lock step: after the parallel tests, alone (conftest.py)

NO_AUG = dict(crop_scale=(1.0, 1.0), flip_p=0.0, blur_p=0.0)  # a (1, 1) crop is the whole image: no randomness left
_SPY = {}   # task name -> initial and final weights of this process, its TrainResult (filled by the `fit` spy)


def _cfg(**kw):
    base = dict(max_steps=4, batch_size=16, lr=2e-3, warmup_steps=1, eval_every=2, ckpt_every=4, val_batch_size=16,
                patience=0, select='last', progress=False, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def _params(family:str, variant:str, tmp:Path):
    """Tiny params of `family`. `variant`: 'noaug' turns the augmentation off, 'best' selects the best weights (else the
    last), 'ssl' trains the SimCLR encoder first (else BabyLLaVA uses a frozen DINO-layout ResNet-18), 'dropout' gives
    GPT-2 dropout 0.1; 'nobn' (in `_job`) leaves the SimCLR CNN's batch norms out, 'nostate' makes no accelerate state first."""
    from babyvlm.train import ImageConfig
    from babyvlm.families import ContrastiveParams, GenerativeParams, HybridParams, ReferenceParams
    from babyvlm.models.contrastive import ContrastiveConfig
    from babyvlm.models.generative import GenerativeConfig
    from babyvlm.models.hybrid import CoCaConfig
    from babyvlm.models.reference import ReferenceConfig
    from babyvlm.models.vision import SSLConfig
    images = ImageConfig(**NO_AUG) if 'noaug' in variant else ImageConfig()
    select = 'best' if 'best' in variant else 'last'
    if family == 'contrastive':
        return ContrastiveParams(ContrastiveConfig(arch='cvcl_vit_tiny', image_size=32), _cfg(select=select), images)
    if family == 'hybrid':
        return HybridParams(CoCaConfig(image_size=32), _cfg(select=select), images)
    if family == 'reference':
        return ReferenceParams(ReferenceConfig(image_size=64), _cfg(select=select, lr=1e-3, weight_decay=0.01))
    gc = GenerativeConfig(n_embd=32, n_layer=1, n_head=2, n_inner=64, dropout=0.1 if 'dropout' in variant else 0.0)
    phases = dict(language=_cfg(lr=5e-3, betas=(0.9, 0.95)), projector=_cfg(lr=5e-3, betas=(0.9, 0.95)),
                  full=_cfg(lr=2e-3, betas=(0.9, 0.95)))
    if 'ssl' in variant:   # SimCLR on the training images first (two augmented views per image)
        return GenerativeParams(gc, vision='ssl', ssl=SSLConfig(widths=(8, 16), image_size=32, grid=2, proj_dim=16),
                                ssl_train=_cfg(lr=3e-3, select=select), ssl_images=images, **phases)
    from babyvlm.testing import write_dino_fixture   # a frozen DINO-layout ResNet-18: the three phases alone
    dino = tmp/'dino.pth'
    if not dino.exists(): write_dino_fixture(dino, 'resnet18')
    return GenerativeParams(gc, vision=str(dino), dino_arch='resnet18', dino_image_size=32, dino_grid=2, **phases)


def _state(m) -> tuple[dict, list]:
    "A CPU copy of a module's state and its parameters' names (a frozen DINO tower left out: it never trains)."
    skip = getattr(m, 'vision', None) is not None and m.vision.spec.get('kind') == 'torchvision'
    sd = {k: v.detach().cpu().clone() for k, v in m.state_dict().items() if not (skip and k.startswith('vision.'))}
    return sd, [n for n, _ in m.named_parameters() if n in sd]


from babyvlm.models.vision import SmallConvNet as _SmallConvNet

class _NoBatchNormCNN(torch.nn.Module):
    "SmallConvNet with its batch norms left out (variant 'nobn'): what SimCLR's gathered loss alone does across processes."
    def __init__(self, widths=(32, 64, 128)):
        super().__init__()
        net = _SmallConvNet(widths)
        self.body = torch.nn.Sequential(*[l for l in net.body if not isinstance(l, torch.nn.BatchNorm2d)])
        self.out_dim = net.out_dim
    def forward(self, x): return self.body(x)


def _spy_on_fit():
    "Wrap `babyvlm.families.fit` (once per process) to record every task's weights before and after training."
    import babyvlm.families as F
    if getattr(F.fit, '_spy', False): return
    orig = F.fit
    def fit(task, cfg, out_dir, on_step=None):
        before, params = _state(task.model)
        r = orig(task, cfg, out_dir, on_step)
        _SPY[task.name] = dict(before=before, after=_state(task.model)[0], params=params, result=asdict(r))
        return r
    fit._spy = True
    F.fit = fit


def _job(out, family, variant):
    "Train `family` on the toy pairs; every process saves what each task started from and ended with as w<rank>.pt in `out`."
    from accelerate.state import AcceleratorState, GradientState
    # accelerate's state is a per-process singleton: a forked child inherits the parent's (single-process) one
    AcceleratorState._reset_state(True); GradientState._reset_state()
    torch.set_num_threads(1)
    import babyvlm.families as F
    if 'nostate' not in variant:   # as `babyvlm train` does: this process's place in the group first (gloo on CPU)
        from accelerate import PartialState
        PartialState(cpu=not torch.cuda.is_available())
    import babyvlm.models.vision as V
    if 'nobn' in variant:   # every SimCLR CNN built from a spec (the encoder, and the tower read back) leaves them out
        V.SmallConvNet = _NoBatchNormCNN
    _spy_on_fit(); _SPY.clear()
    out = Path(out)
    tr, va = toy_pairs(32, seed=1), toy_pairs(16, seed=2)
    seed_everything(0, threads=1)
    try: summary = F.get_family(family).train(_params(family, variant, out.parent), tr, va, out)
    finally: V.SmallConvNet = _SmallConvNet   # the next variant in this process gets the real CNN
    dist = torch.distributed
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    torch.save(dict(tasks=dict(_SPY), summary=summary, world=world), out/f'w{rank}.pt')


def _max_diff(a:dict, b:dict, keys=None) -> float:
    assert a.keys() == b.keys()
    return max([(a[k].float() - b[k].float()).abs().max().item() for k in (keys or a) if a[k].is_floating_point()] or [0.0])


def _one_vs_two(tmp_path:Path, family:str, variant:str) -> dict:
    from accelerate import debug_launcher
    from accelerate.utils import patch_environment
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # else accelerate sets torch's threads from the core count
    with patch_environment(accelerate_use_cpu='yes'):  # on a GPU machine too: compare CPU with CPU (debug_launcher is CPU-only)
        _job(str(tmp_path/'one'), family, variant)
    debug_launcher(_job, args=(str(tmp_path/'two'), family, variant), num_processes=2)  # gloo, file rendezvous
    one = torch.load(tmp_path/'one'/'w0.pt', weights_only=False)
    r0, r1 = torch.load(tmp_path/'two'/'w0.pt', weights_only=False), torch.load(tmp_path/'two'/'w1.pt', weights_only=False)
    out = dict(worlds=[one['world'], r0['world'], r1['world']], tasks=list(one['tasks']), tasks_two=list(r0['tasks']),
               summary_tasks=list(one['summary']['tasks']), per_task={})
    for name, t1 in one['tasks'].items():
        a, b = r0['tasks'][name], r1['tasks'][name]
        res1, res2 = t1['result'], a['result']
        log = lambda d: [json.loads(l)['step'] for l in (tmp_path/d/name/'train_log.jsonl').read_text().splitlines()]
        out['per_task'][name] = dict(
            init_diff=_max_diff(t1['before'], a['before']), moved=_max_diff(t1['before'], t1['after']),
            diff=_max_diff(t1['after'], a['after']), diff_params=_max_diff(t1['after'], a['after'], t1['params']),
            replica_diff=_max_diff(a['after'], b['after']), replica_param_diff=_max_diff(a['after'], b['after'], a['params']),
            val_one=res1['final_val_loss'], val_two=res2['final_val_loss'], best_one=res1['best_step'], best_two=res2['best_step'],
            steps=[res1['steps'], res2['steps']], n_trainable=[res1['n_trainable'], res2['n_trainable']],
            log_one=log('one'), log_two=log('two'),
            train_loss_one=[res1['first_train_loss'], res1['final_train_loss']],
            train_loss_two=[res2['first_train_loss'], res2['final_train_loss']],
            train_loss_two_rank1=[b['result']['first_train_loss'], b['result']['final_train_loss']])
    return out


# every (family, variant) the tests below compare, made in one worker process (see `_compare`)
VARIANTS = [('contrastive', 'noaug-best'), ('contrastive', 'aug'), ('contrastive', 'noaug-best-nostate'), ('generative', 'dino'),
            ('generative', 'dino-dropout'), ('generative', 'ssl-nobn'), ('generative', 'ssl'), ('hybrid', 'aug'), ('reference', 'best')]
_RUNS = {}

def _compare(tmp_path_factory, family:str, variant:str='-') -> dict:
    """`_one_vs_two` of `(family, variant)`. The first call makes every pair of `VARIANTS` in one new Python process (one
    start and one import of torch for all of them; the tests share the results): forking workers from a process whose
    torch/OpenMP thread pools already ran with several threads (as pytest's, after other tests) can deadlock the children,
    so the launcher starts from a clean process with one thread. A pair that fails there fails its own tests only."""
    import subprocess, sys
    if not _RUNS:
        d = tmp_path_factory.mktemp('one-vs-two')
        env = {**os.environ, 'OMP_NUM_THREADS': '1', 'BABYVLM_THREADS': '1'}
        r = subprocess.run([sys.executable, __file__, str(d)] + [f'{f}:{v}' for f, v in VARIANTS], capture_output=True, text=True,
                           timeout=1200, env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
        _RUNS.update({tuple(k.split(':')): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()})
    res = _RUNS[family, variant]
    assert 'error' not in res, f"{family} {variant}: {res.get('error')}"
    return res


def _check(res:dict, tasks:list, diff:float=5e-4):
    "2 processes trained every task of `tasks` as 1 process did."
    assert res['worlds'] == [1, 2, 2] and res['tasks'] == res['tasks_two'] == res['summary_tasks'] == tasks, res
    for i, (name, r) in enumerate(res['per_task'].items()):
        # each process of the pair logged nothing of its own: one line per evaluation (a process that trained the whole
        # batch alone would think it is the main process too, and write every line twice)
        assert r['log_one'] == r['log_two'] == [2, 4], (name, r)
        assert r['replica_diff'] == 0, (name, r)       # replicas stay in sync (parameters and buffers)
        # the same initial weights (a later task starts where the previous one ended)
        assert r['init_diff'] == 0 if i == 0 else r['init_diff'] < diff, (name, r)
        assert r['moved'] > 1e-3, (name, r)            # training did change the weights
        assert r['diff'] < diff, (name, r)             # float32 reduction order only (measured: 1e-5 to 2e-4; Adam amplifies tiny gradients)
        assert abs(r['val_one'] - r['val_two']) < 1e-4, (name, r)
        assert r['best_one'] == r['best_two'] and r['steps'] == [4, 4] and r['n_trainable'][0] == r['n_trainable'][1], (name, r)


def test_contrastive_two_processes_match_one(tmp_path_factory):
    "CVCL without augmentation, the best weights selected: the same best step and weights."
    _check(_compare(tmp_path_factory, 'contrastive', 'noaug-best'), ['contrastive'])


def test_contrastive_two_processes_match_one_with_augmentation(tmp_path_factory):
    "Augmentation is seeded per (seed, step, global position), so the split across processes does not change it."
    _check(_compare(tmp_path_factory, 'contrastive', 'aug'), ['contrastive'])


def test_generative_two_processes_match_one(tmp_path_factory):
    "BabyLLaVA's three phases on a frozen DINO-layout encoder: the token losses are means over the global batch's tokens."
    _check(_compare(tmp_path_factory, 'generative', 'dino'), ['phase0_language', 'phase1_projector', 'phase2_full'])


def test_generative_simclr_two_processes_match_one_without_batch_norm(tmp_path_factory):
    """SimCLR first (two augmented views, NT-Xent over the gathered global batch), then the phases on its encoder; with the
    CNN's batch norms left out (see the next test) the whole family matches."""
    _check(_compare(tmp_path_factory, 'generative', 'ssl-nobn'), ['phase0_vision', 'phase0_language', 'phase1_projector', 'phase2_full'])


@pytest.mark.xfail(strict=True, reason="on CPU (gloo) there is no SyncBatchNorm: the SimCLR CNN's batch norms normalise each "
                   "process's half of the batch and keep per-process running statistics (fit converts them to SyncBatchNorm "
                   "on GPUs only), so SimCLR on 2 CPU processes trains another encoder than on 1")
def test_generative_simclr_two_processes_match_one(tmp_path_factory):
    _check(_compare(tmp_path_factory, 'generative', 'ssl'), ['phase0_vision', 'phase0_language', 'phase1_projector', 'phase2_full'])


def test_generative_simclr_batch_norm_is_the_only_difference(tmp_path_factory):
    "What the xfail above rests on: on 2 CPU processes the SimCLR parameters stay in sync, only batch-norm buffers differ."
    r = _compare(tmp_path_factory, 'generative', 'ssl')['per_task']['phase0_vision']
    assert r['log_two'] == [2, 4] and r['replica_param_diff'] == 0 and r['replica_diff'] > 0, r
    assert r['diff_params'] > 1e-3, r   # the encoder trained differently: batch statistics of 16 images vs 2 x 8


@pytest.mark.xfail(strict=True, reason="dropout is not invariant to the process count: fit seeds every process's RNG with "
                   "(seed, step) alone, so each process draws the masks of the first rows of a batch for its own rows (GPT-2's "
                   "dropout, GenerativeConfig's default 0.1 and the paper's 0.15; CVCL and CoCa have none); on GPUs too")
def test_generative_with_dropout_two_processes_match_one(tmp_path_factory):
    _check(_compare(tmp_path_factory, 'generative', 'dino-dropout'), ['phase0_language', 'phase1_projector', 'phase2_full'])


def test_hybrid_two_processes_match_one(tmp_path_factory):
    "CoCa: InfoNCE over the gathered batch plus the caption loss over the global token count, with augmentation."
    _check(_compare(tmp_path_factory, 'hybrid', 'aug'), ['coca'])


def test_reference_two_processes_match_one(tmp_path_factory):
    "The LiT reference's heads on the cached frozen features (encoders from the asset cache), the best weights selected."
    _check(_compare(tmp_path_factory, 'reference', 'best'), ['reference'])


def test_registry_under_a_launcher_splits_the_batch(tmp_path_factory):
    """The registry called directly in each launched process, without `babyvlm train`'s accelerate state made first (as a
    script under `accelerate launch` / `debug_launcher` calls it): it still trains one model over 2 processes."""
    _check(_compare(tmp_path_factory, 'contrastive', 'noaug-best-nostate'), ['contrastive'])


@pytest.mark.parametrize('family,variant', [('contrastive', 'aug'), ('generative', 'dino'), ('hybrid', 'aug')])
def test_logged_training_loss_is_the_global_batch_mean(tmp_path_factory, family, variant):
    "TrainResult's training losses (and train_log.jsonl's) are those of the global batch, whatever the process count."
    for name, r in _compare(tmp_path_factory, family, variant)['per_task'].items():
        for a, b, c in zip(r['train_loss_one'], r['train_loss_two'], r['train_loss_two_rank1']):
            assert abs(a - b) < 1e-4 and abs(b - c) < 1e-6, (name, r)


if __name__ == '__main__':   # the worker of `_compare`: python test_distributed.py DIR FAMILY:VARIANT ...
    import sys, traceback
    out = {}
    for fv in sys.argv[2:]:
        family, variant = fv.split(':')
        d = Path(sys.argv[1])/f'{family}-{variant}'; d.mkdir(parents=True)
        try: out[fv] = _one_vs_two(d, family, variant)
        except Exception: out[fv] = {'error': traceback.format_exc()[-3000:]}
    print(json.dumps(out))


def _free_port():
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_cli_train_two_processes(tmp_path):
    "`babyvlm train` in 2 CPU processes (gloo, started as `accelerate launch --multi_gpu` starts them) trains what 1 process trains."
    import subprocess, sys
    from safetensors.torch import load_file
    bin_ = Path(sys.executable).parent
    tiny = ['world.n_home_train=96', 'world.n_home_val=32', 'world.n_web=16', 'world.n_web_val=8', 'world.labeled_s_per_category=1',
            'world.n_vtwt=4', 'world.n_winoground=2', 'world.n_captions=2', 'world.real_photo_trials_per_image=1',
            'contrastive.model.image_size=32', 'contrastive.train.max_steps=4', 'contrastive.train.batch_size=16',
            'contrastive.train.eval_every=4', 'contrastive.train.ckpt_every=4', 'contrastive.train.val_batch_size=16',
            'contrastive.train.warmup_steps=1', 'contrastive.train.progress=false', 'contrastive.train.tensorboard=false']
    args = ['train', '--profile', 'quick', '--condition', 'home', '--family', 'contrastive', '--out']
    sets = sum([['--set', s] for s in tiny], [])
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'BABYVLM_THREADS': '1'}
    one = subprocess.run([str(bin_/'babyvlm'), *args, str(tmp_path/'one'), *sets], capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    # on GPUs: `accelerate launch --multi_gpu --num_processes N -m babyvlm.cli train ...`, which starts the processes with
    # torch.distributed.run; accelerate's --cpu launches one process (several need MPI), so on CPU torch.distributed.run directly
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
                          '--master_port', str(_free_port()), '-m', 'babyvlm.cli', *args, str(tmp_path/'two'), *sets],
                         capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert 'on 2 process(es)' in two.stdout and 'on 1 process(es)' in one.stdout, (one.stdout, two.stdout)
    assert json.loads((tmp_path/'two'/'provenance.json').read_text())['processes'] == 2
    for d in ('one', 'two'):   # the run folder the registry writes, merged log and the task's own folder included
        assert {'model.safetensors', 'model_config.json', 'vocab.json', 'train_log.jsonl', 'contrastive', 'params.yaml',
                'train_utterances.json'} <= {p.name for p in (tmp_path/d).iterdir()}, d
    r1, r2 = (json.loads((tmp_path/d/'contrastive'/'train_result.json').read_text()) for d in ('one', 'two'))
    assert r1['steps'] == r2['steps'] == 4 and abs(r1['final_val_loss'] - r2['final_val_loss']) < 1e-4, (r1, r2)
    w1, w2 = load_file(tmp_path/'one'/'model.safetensors'), load_file(tmp_path/'two'/'model.safetensors')
    assert w1.keys() == w2.keys()
    diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert diff < 5e-4, diff
