"""Data-parallel contrastive training on CPU: 2 processes (gloo, accelerate's `debug_launcher`) against 1 process with
the same global batch. InfoNCE must see the global batch (open_clip's `ClipLoss` all-gathers the embeddings with
gradients) and the result must not depend on how the batch is split."""
import json, os
from pathlib import Path
import pytest, torch
from babyvlm.core import seed_everything
from babyvlm.text import build_vocab
from babyvlm.models.contrastive import ContrastiveConfig, create_contrastive
from babyvlm.train import TrainConfig, train_contrastive
from babyvlm.testing import toy_pairs

MCFG = ContrastiveConfig(arch='cvcl_vit_tiny', image_size=32)
NO_AUG = dict(crop_scale=(1.0, 1.0), flip_p=0.0, blur_p=0.0)  # a (1, 1) crop is the whole image: no randomness left


def _cfg(**kw):
    base = dict(max_steps=4, batch_size=16, lr=2e-3, warmup_steps=1, eval_every=4, ckpt_every=4, val_batch_size=16,
                patience=0, progress=False, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def _job(out, cfg_kw):
    "Train the toy model; every process saves its final weights as w<rank>.pt in `out`."
    from accelerate.state import AcceleratorState, GradientState
    # accelerate's state is a per-process singleton: a forked child inherits the parent's (single-process) one
    AcceleratorState._reset_state(True); GradientState._reset_state()
    torch.set_num_threads(1)
    tr, va = toy_pairs(32, seed=1), toy_pairs(16, seed=2)
    vocab = build_vocab(tr['text'])
    seed_everything(0, threads=1)
    m = create_contrastive(MCFG, vocab)
    r = train_contrastive(m, vocab, tr, va, _cfg(**cfg_kw), out)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(dict(weights={k: v.detach().clone() for k, v in m.state_dict().items()}, final_val_loss=r.final_val_loss,
                    world=torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1),
               Path(out)/f'w{rank}.pt')


def _one_vs_two(tmp_path, cfg_kw):
    from accelerate import debug_launcher
    from accelerate.utils import patch_environment
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # else accelerate sets torch's threads from the core count
    with patch_environment(accelerate_use_cpu='yes'):  # on a GPU machine too: compare CPU with CPU (debug_launcher is CPU-only)
        _job(str(tmp_path/'one'), cfg_kw)
    debug_launcher(_job, args=(str(tmp_path/'two'), cfg_kw), num_processes=2)  # gloo, file rendezvous (no fixed port)
    one = torch.load(tmp_path/'one'/'w0.pt')
    r0, r1 = torch.load(tmp_path/'two'/'w0.pt'), torch.load(tmp_path/'two'/'w1.pt')
    assert (one['world'], r0['world'], r1['world']) == (1, 2, 2)
    for k in r0['weights']: assert torch.equal(r0['weights'][k], r1['weights'][k]), k   # replicas stay in sync
    moved = max((one['weights'][k] - v).abs().max().item() for k, v in _init_weights().items())
    diff = max((one['weights'][k] - r0['weights'][k]).abs().max().item() for k in one['weights'])
    return one, r0, diff, moved


def _init_weights():
    tr = toy_pairs(32, seed=1)
    seed_everything(0, threads=1)
    return create_contrastive(MCFG, build_vocab(tr['text'])).state_dict()


def _compare_in_fresh_process(tmp_path, aug:bool) -> dict:
    """Run `_one_vs_two` in a new Python process: forking workers from a process whose torch/OpenMP thread pools already
    ran (as pytest's, after other tests) can deadlock the children, so the launcher starts from a clean process."""
    import json, subprocess, sys
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'BABYVLM_THREADS': '1'}
    r = subprocess.run([sys.executable, __file__, str(tmp_path), 'aug' if aug else 'noaug'], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_two_processes_match_one(tmp_path):
    r = _compare_in_fresh_process(tmp_path, aug=False)
    assert r['moved'] > 1e-3                  # training did change the weights
    assert r['diff'] < 5e-4, r['diff']        # float32 reduction order only (measured: ~1e-4; Adam amplifies tiny gradients)
    assert abs(r['val_one'] - r['val_two']) < 1e-4


def test_two_processes_match_one_with_augmentation(tmp_path):
    "Augmentation is seeded per (seed, step, global position), so the split across processes does not change it."
    r = _compare_in_fresh_process(tmp_path, aug=True)
    assert r['moved'] > 1e-3
    assert r['diff'] < 5e-4, r['diff']
    assert abs(r['val_one'] - r['val_two']) < 1e-4


if __name__ == '__main__':   # the worker of `_compare_in_fresh_process`: python test_distributed.py DIR aug|noaug
    import json, sys
    one, two, diff, moved = _one_vs_two(Path(sys.argv[1]), {} if sys.argv[2] == 'aug' else NO_AUG)
    print(json.dumps(dict(diff=diff, moved=moved, val_one=one['final_val_loss'], val_two=two['final_val_loss'])))


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
            'model.image_size=32', 'train.max_steps=4', 'train.batch_size=16', 'train.eval_every=4', 'train.ckpt_every=4',
            'train.val_batch_size=16', 'train.warmup_steps=1', 'train.progress=false', 'train.tensorboard=false']
    args = ['train', '--profile', 'quick', '--condition', 'home', '--out']
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
    w1, w2 = load_file(tmp_path/'one'/'model.safetensors'), load_file(tmp_path/'two'/'model.safetensors')
    assert w1.keys() == w2.keys()
    diff = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert diff < 5e-4, diff
