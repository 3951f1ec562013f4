"""Bad input, each refused with a message naming the file, key or line and what was expected; nothing half-written left behind.
Every case here is listed, with the message a user sees, in the closing note of issue 17."""
import errno, json, os, shutil, socket, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
from PIL import Image
from babyvlm.core import ParamsError, read_yaml, write_atomic
from babyvlm.study import load_params, load_params_file, prepare_run, study_lock, StudyError, LOCK_FILE
from babyvlm.train import TrainConfig, ImageConfig, check_train_config, decode_image
from babyvlm.evaluate import EvalConfig, evaluate_labeled_s

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _refused(overrides, match, condition='home'):
    with pytest.raises(ParamsError) as e: load_params('quick', condition, 0, overrides)
    assert match in str(e.value), str(e.value)
    return str(e.value)


# ---- parameters -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('prompt', ['a photo', 'a {0} here', 'the {cat}', '{} and {}', 'a {'])
def test_prompt_without_a_place_for_the_word(prompt):
    "Without `{}` every trial would score one constant text: refused, in a file or in code."
    msg = _refused([f'eval.prompt={prompt!r}'.replace("'", '"')], "eval.prompt must hold '{}' exactly once")
    assert f"override 'eval.prompt=" in msg and repr(prompt) in msg
    with pytest.raises(ParamsError, match=r"evaluate_labeled_s: eval.prompt must hold"):
        evaluate_labeled_s(None, [], EvalConfig(prompt=prompt))


@pytest.mark.parametrize('override,match', [
    ('world.test_share=1.5', 'world.test_share must be in (0, 1), got 1.5'),
    ('world.test_share=0', 'world.test_share must be in (0, 1), got 0.0'),
    ('world.val_share=-0.1', 'world.val_share must be in (0, 1), got -0.1'),
    ('world.naming_share=1.2', 'world.naming_share must be in [0, 1], got 1.2'),
    ('world.distractor_share=-1', 'world.distractor_share must be in [0, 1], got -1.0'),
    ('world.grounding_share=2', 'world.grounding_share must be in [0, 1], got 2.0'),
    ('world.hand_share=-0.5', 'world.hand_share must be in [0, 1], got -0.5'),
    ('world.web_share=1', 'world.web_share must be in [0, 1), got 1.0'),
    ('world.n_home_train=-3', 'world.n_home_train must be >= 1, got -3'),
    ('world.n_home_val=1', 'world.n_home_val must be >= 2, got 1'),
    ('world.n_web=-5', 'world.n_web must be >= 0, got -5'),
    ('world.labeled_s_per_category=0', 'world.labeled_s_per_category must be >= 1, got 0'),
    ('world.image_size=2', 'world.image_size must be >= 8, got 2'),
    ('world.n_winoground=500', 'world.n_winoground must be <= world.n_vtwt'),
])
def test_world_sizes_and_shares_out_of_range(override, match):
    msg = _refused([override], match)
    assert f"override '{override}'" in msg.split(': ')[0], msg   # the error names where the value came from


def test_shares_that_leave_no_training_data(tmp_path):
    "The test and validation shares together must leave some asset groups to train on; the error names the file."
    prof = tmp_path/'p.yaml'
    prof.write_text((ROOT/'params'/'profiles'/'quick.yaml').read_text().replace('  image_size: 64\n', '  image_size: 64\n  test_share: 0.6\n  val_share: 0.5\n'))
    with pytest.raises(ParamsError, match=r"world.test_share \+ world.val_share must be < 1 .*got 0.6 \+ 0.5") as e:
        load_params(prof, 'home', 0)
    assert str(e.value).startswith(f"{prof} + "), str(e.value)   # the layers, the profile first
    # a rule across fields is checked once every layer is in: an override may set n_vtwt before the next sets n_winoground
    p = load_params('quick', 'home', 0, ['world.n_vtwt=60', 'world.n_winoground=24'])
    assert (p.world.n_vtwt, p.world.n_winoground) == (60, 24)


@pytest.mark.parametrize('override,match', [
    ('contrastive.train.max_steps=-1', 'contrastive.train.max_steps must be >= 0, got -1'),
    ('contrastive.train.batch_size=0', 'contrastive.train.batch_size must be >= 1, got 0'),
    ('hybrid.train.batch_size=-64', 'hybrid.train.batch_size must be >= 1, got -64'),
    ('contrastive.train.lr=0', 'contrastive.train.lr must be > 0, got 0.0'),
    ('generative.full.lr=-0.001', 'generative.full.lr must be > 0, got -0.001'),
    ('reference.train.eval_every=0', 'reference.train.eval_every must be >= 1, got 0'),
    ('contrastive.train.warmup_steps=-5', 'contrastive.train.warmup_steps must be >= 0, got -5'),
    ('contrastive.train.schedule=linear', "contrastive.train.schedule must be 'cosine' or 'constant', got 'linear'"),
    ('contrastive.train.betas=[0.9,1.5]', 'contrastive.train.betas must both be in [0, 1), got [0.9, 1.5]'),
    ('eval.n_boot=0', 'eval.n_boot must be >= 1, got 0'),
    ('eval.ci=1.5', 'eval.ci must be in (0, 1), got 1.5'),
])
def test_steps_batches_learning_rates_out_of_range(override, match):
    _refused([override], match)


def test_zero_steps_refused_where_the_engine_starts():
    "0 steps skips a phase of the phased (generative) family; a section the engine trains must have at least one."
    assert load_params('quick', 'home', 0, ['generative.language.max_steps=0']).generative.language.max_steps == 0
    with pytest.raises(ParamsError, match=r'^cvcl training.max_steps must be >= 1, got 0$'):
        check_train_config(TrainConfig(max_steps=0), 'cvcl training')


def test_unknown_family_and_condition():
    _refused(['family=diffusion'], "family 'diffusion' is unknown")
    with pytest.raises(ParamsError, match=r"conditions/nursery.yaml: no such condition; available: .*home.*saycam"):
        load_params('quick', 'nursery', 0)
    with pytest.raises(ParamsError, match=r"profiles/huge.yaml: no such profile; available: default, paper, quick"):
        load_params('huge')


@pytest.mark.parametrize('text,match', [('- home\n- web\n', 'expected a mapping at the top level, got list'),
                                        ('just words\n', 'expected a mapping at the top level, got str'),
                                        ('data: {sources: [home\n', 'not valid YAML'),
                                        ('data:\n  source: [home]\n', "unknown key 'data.source' (did you mean 'data.sources'?)")])
def test_condition_file_that_is_not_a_mapping(tmp_path, text, match):
    f = tmp_path/'odd.yaml'; f.write_text(text)
    with pytest.raises(ParamsError) as e: load_params('quick', f, 0)
    assert str(f) in str(e.value) and match in str(e.value), str(e.value)


# ---- a run folder's params.yaml -------------------------------------------------------------------------------------
@pytest.fixture
def run_folder(tmp_path):
    out = tmp_path/'run'
    prepare_run(load_params('quick', 'home', 0, ['jobs=1']), out)
    return out


def test_truncated_params_yaml(run_folder):
    f = run_folder/'params.yaml'
    lines = f.read_text().splitlines()
    f.write_text('\n'.join(lines[:len(lines) // 3]) + '\n')   # cut between two lines: still YAML, sections missing
    with pytest.raises(ParamsError, match=r"params.yaml: missing section\(s\) .*: the file is truncated or was edited by hand"):
        load_params_file(f)
    f.write_text('\n'.join(lines)[:len('\n'.join(lines)) // 2])   # cut in the middle of a line
    with pytest.raises(ParamsError, match=r'params.yaml: (missing section|not valid YAML|.* must be)'):
        load_params_file(f)


def test_hand_edited_params_yaml(run_folder):
    f = run_folder/'params.yaml'
    d = read_yaml(f); d['contrastive']['train']['lr'] = 0.5
    import yaml; f.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(ParamsError, match=r"params.yaml: these parameters \(hash \w+\) are not the ones provenance.json recorded .*"
                                          r"edited by hand, or written by another version of babyvlm"):
        load_params_file(f)
    d['contrastive']['train']['learning_rate'] = 0.5   # a key this version does not know (another version's file)
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(ParamsError, match=r"unknown key 'contrastive.train.learning_rate'"): load_params_file(f)


def test_run_folder_from_another_code_version(run_folder):
    "A version that adds or drops a setting writes other parameters than this one reads: the recorded hash tells."
    prov = json.loads((run_folder/'provenance.json').read_text())
    prov['params_hash'] = '0123456789abcdef'; prov['git'] = {'commit': 'f' * 40, 'dirty': False}
    (run_folder/'provenance.json').write_text(json.dumps(prov))
    with pytest.raises(ParamsError, match=r"another version of babyvlm \(the run's commit ffffffffffff, this checkout's"):
        load_params_file(run_folder/'params.yaml')


def _cli(*args, **kw):
    return subprocess.run([str(BIN/'babyvlm'), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **kw})


def test_evaluate_run_of_another_profile_or_version(run_folder, tmp_path):
    r = _cli('evaluate', '--run', run_folder, '--profile', 'default', '--out', tmp_path/'e')
    assert r.returncode == 2, r.stdout + r.stderr
    assert (f"evaluate: {run_folder} was trained on the world of profile 'quick'" in r.stderr
            and "not on the world of --profile default" in r.stderr and 'drop --profile' in r.stderr), r.stderr
    f = run_folder/'params.yaml'; f.write_text(f.read_text()[:200])
    r = _cli('evaluate', '--run', run_folder, '--out', tmp_path/'e')
    assert r.returncode == 2 and 'babyvlm: parameter error:' in r.stderr and 'params.yaml' in r.stderr, r.stderr
    assert not (tmp_path/'e'/'metrics.json').exists()


# ---- item CSVs (babylmms-eval format) -------------------------------------------------------------------------------
def _csvs(tmp_path):
    from babyvlm.benchmarks import BABYLMMS_HEADERS
    root = tmp_path/'csv'
    rows = {'labeled_s': [[t, 'ball', c, f'{c}/img_{t}.jpeg'] for t in range(2) for c in ('ball', 'cup', 'dog', 'cat')],
            'baby_winoground': [[i, 'read book', 'eat ball', f'w{i}{t[0]}.jpg', t] for i in range(2) for t in ('positive', 'negative')]}
    for name, rs in rows.items():
        p = root/name/f'{name}.csv'; p.parent.mkdir(parents=True)
        p.write_text('\n'.join(','.join(map(str, r)) for r in [BABYLMMS_HEADERS[name], *rs]) + '\n')
    return root


@pytest.mark.parametrize('name,edit,match', [
    ('labeled_s', lambda t: t.replace('trial_id,', 'trial,', 1), r"labeled_s.csv:1: missing column\(s\) \['trial_id'\]"),
    ('labeled_s', lambda t: t.replace('image\n', 'image,note\n', 1).replace('.jpeg\n', '.jpeg,x\n'),
     r"labeled_s.csv:1: unexpected column\(s\) \['note'\]"),
    ('labeled_s', lambda t: t.replace('\n1,', '\n0,'), r"labeled_s.csv:2: trial 0 has 8 rows \(lines \[2, 3, 4, 5, 6, 7, 8, 9\]\), expected 4"),
    ('baby_winoground', lambda t: t.replace('\n1,', '\n0,'), r"baby_winoground.csv:2: instance 0 has rows tagged \['positive', 'negative', 'positive', 'negative'\]"),
    ('labeled_s', lambda t: t.replace('0,ball,cup,', '0,ball,ball,', 1), r"labeled_s.csv:2: trial 0 has 2 rows whose real_category is the target 'ball'"),
    ('labeled_s', lambda t: t.replace('0,ball,ball,', '0,ball,bat,', 1), r"labeled_s.csv:2: trial 0 has 0 rows whose real_category is the target"),
    ('labeled_s', lambda t: t.replace('cup/img_1', 'cup/img_\xe91'), r"labeled_s.csv:7: not UTF-8 \(byte 0xe9 at offset \d+\); save the file as UTF-8"),
    ('baby_winoground', lambda t: t.replace('read book', '   ', 1), r"baby_winoground.csv:2: empty field\(s\) \['positive_phrase'\]"),
])
def test_item_csvs(tmp_path, name, edit, match):
    from babyvlm.benchmarks import BabyLMMSFormatError, load_babylmms
    root = _csvs(tmp_path)
    p = root/name/f'{name}.csv'
    t = edit(p.read_text())
    p.write_bytes(t.encode('latin-1') if '\xe9' in t else t.encode())
    with pytest.raises(BabyLMMSFormatError, match=match): load_babylmms(root, root, [name])


# ---- images ---------------------------------------------------------------------------------------------------------
def test_images_grey_and_cmyk_are_converted_tiny_and_truncated_refused(tmp_path):
    from babyvlm.benchmarks import ImageFileError, load_image
    Image.new('L', (16, 12), 90).save(tmp_path/'grey.png')
    Image.new('CMYK', (16, 12), (0, 50, 100, 0)).save(tmp_path/'cmyk.jpg')
    for f in ('grey.png', 'cmyk.jpg'):
        im = load_image(tmp_path/f)
        assert im.mode == 'RGB' and im.size == (16, 12), f
    Image.new('RGB', (1, 1)).save(tmp_path/'dot.png')
    with pytest.raises(ImageFileError, match=r"benchmark image .*dot.png is 1x1 pixels; at least 4 pixels a side expected"):
        load_image(tmp_path/'dot.png')
    Image.new('RGB', (64, 64), (10, 200, 30)).save(tmp_path/'full.jpg', quality=95)
    b = (tmp_path/'full.jpg').read_bytes(); (tmp_path/'cut.jpg').write_bytes(b[:len(b) // 2])
    with pytest.raises(ImageFileError, match=r"benchmark image .*cut.jpg cannot be decoded \(OSError: (image file is truncated|Truncated File Read)"):
        load_image(tmp_path/'cut.jpg')
    # training pairs: the row (and asset) are named
    import io
    buf = io.BytesIO(); Image.new('RGB', (1, 1)).save(buf, format='PNG')
    with pytest.raises(ValueError, match=r"pair dataset row 7, asset a-7: image cannot be decoded \(ValueError: the image is 1x1 pixels"):
        decode_image({'bytes': buf.getvalue(), 'path': None}, 32, 7, 'a-7')
    with pytest.raises(ValueError, match=r"pair dataset row 3: image cannot be decoded \(OSError: (image file is truncated|Truncated File Read)"):
        decode_image({'bytes': b[:len(b) // 2], 'path': None}, 32, 3)
    cmyk = io.BytesIO(); Image.new('CMYK', (40, 40), (0, 50, 100, 0)).save(cmyk, format='JPEG')
    assert tuple(decode_image({'bytes': cmyk.getvalue(), 'path': None}, 32, 0).shape) == (3, 32, 32)


# ---- utterances, LLM replies, pretrained files ----------------------------------------------------------------------
@pytest.mark.parametrize('utt', ['', '   ', '\t\n'])
def test_empty_or_whitespace_utterance(tmp_path, utt):
    from babyvlm.realdata import RealDataError, read_saycam_entries
    f = tmp_path/'train.json'
    f.write_text(json.dumps({'data': [{'utterance': 'look a ball', 'frame_filenames': ['a.jpg']},
                                      {'utterance': utt, 'frame_filenames': ['b.jpg']}]}))
    with pytest.raises(RealDataError, match=rf"train.json entry 1: 'utterance' must be a non-empty string, got {json.dumps(utt)[1:-1]!s}"[:60]):
        read_saycam_entries(f)


@pytest.mark.parametrize('reply,err', [('', 'empty reply'), ('  \n \n', 'empty reply'), ('"  "', 'empty reply'),
                                       (42, 'reply content is int, expected a string'), (None, 'reply content is NoneType')])
def test_llm_backend_with_empty_or_non_text_reply(tmp_path, reply, err):
    "A reply without text is not used: the caption gets no rewrite (None), and the report counts and names the error."
    from babyvlm.transfer import LLMBackend
    class Fake(LLMBackend):
        name = 'fake'
        def _complete(self, kind, caption): return reply
    b = Fake('fake-model', cache_file=tmp_path/'llm.jsonl', max_retries=1, base_delay=0.0)
    out, rep = b.rewrite_many(['look at the ball', 'a dog'])
    assert out == [None, None]
    assert rep['n_failed'] == 2 and rep['errors'].get('malformed') == 4, rep   # 2 captions x (1 try + 1 retry)
    assert any(err in e for e in rep['first_errors']), rep['first_errors']
    assert not (tmp_path/'llm.jsonl').exists() or not (tmp_path/'llm.jsonl').read_text().strip()   # nothing cached


def test_dino_file_with_wrong_shapes(tmp_path):
    import torchvision
    from babyvlm.realdata import RealDataError, load_dino_resnext50
    sd = torchvision.models.resnet18().state_dict()
    torch.save({'teacher': {**sd, 'conv1.weight': torch.zeros(64, 3, 3, 3)}}, tmp_path/'dino.pth')
    with pytest.raises(RealDataError, match=r"dino.pth.*mis-shaped key\(s\): \['conv1.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)'\]"):
        load_dino_resnext50(tmp_path/'dino.pth', arch='resnet18')
    torch.save([1, 2, 3], tmp_path/'list.pth')
    with pytest.raises(RealDataError, match=r"list.pth: expected a dict, got list"):
        load_dino_resnext50(tmp_path/'list.pth', arch='resnet18')


def test_clip_file_with_wrong_shapes(tmp_path):
    import open_clip
    from babyvlm.realdata import RealDataError, load_open_clip_local
    from babyvlm.testing import register_tiny_clip
    register_tiny_clip(tmp_path/'cfg', 'tiny-clip-bad')
    sd = open_clip.create_model('tiny-clip-bad').state_dict()
    sd['text_projection'] = torch.zeros(16, 4)
    torch.save(sd, tmp_path/'clip.bin')
    with pytest.raises(RealDataError, match=r"(?s)open_clip checkpoint .*clip.bin does not fit tiny-clip-bad: .*size mismatch for text_projection"):
        load_open_clip_local('tiny-clip-bad', tmp_path/'clip.bin')


# ---- outputs, disk, locks -------------------------------------------------------------------------------------------
def test_outputs_folder_not_writable(tmp_path):
    if os.geteuid() == 0:   # root writes through permissions: a folder that cannot be created stands in for it
        target = Path('/proc/babyvlm-outputs')
    else:
        ro = tmp_path/'ro'; ro.mkdir(); os.chmod(ro, 0o500); target = ro/'quick'
    with pytest.raises(StudyError, match=r"(cannot create the outputs folder|the outputs folder .* is not writable).*--out DIR"):
        with study_lock(target, echo=lambda *a: None): pass
    r = _cli('study', '--profile', 'quick', '--conditions', 'home', '--out', target.parent, '--no-report')
    assert r.returncode == 2 and 'babyvlm: ' in r.stderr and '--out DIR' in r.stderr, r.stderr


def test_disk_full_while_writing_a_file_leaves_the_old_one(tmp_path, monkeypatch):
    f = write_atomic(tmp_path/'metrics.json', '{"ok": 1}')
    real = os.fsync
    def full(fd): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError, match=r"no space left on the device while writing .*metrics.json; it was left as it was") as e:
        write_atomic(f, '{"ok": 2, "much": "more"}')
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, 'fsync', real)
    assert f.read_text() == '{"ok": 1}' and [p.name for p in tmp_path.iterdir()] == ['metrics.json']


def test_lock_refuses_a_second_study_and_clears_a_stale_one(tmp_path):
    sd = tmp_path/'quick'
    with study_lock(sd, echo=lambda *a: None) as lock:
        held = json.loads(lock.read_text())
        assert held['pid'] == os.getpid() and held['host'] == socket.gethostname() and held['started']
        with pytest.raises(StudyError, match=rf"{sd} is in use by another study: pid {os.getpid()} on {socket.gethostname()}, started"):
            with study_lock(sd, echo=lambda *a: None): pass
    assert not lock.exists()   # released
    dead = subprocess.Popen(['true']); dead.wait()
    (sd/LOCK_FILE).write_text(json.dumps({'pid': dead.pid, 'host': socket.gethostname(), 'started': 'earlier', 'command': 'babyvlm study'}))
    log = []
    with study_lock(sd, echo=log.append): pass
    assert any(f'removing a stale lock' in m and f'pid {dead.pid}' in m for m in log), log


def test_cli_second_study_on_the_same_folder_refuses(tmp_path):
    sd = tmp_path/'quick'; sd.mkdir()
    other = subprocess.Popen(['sleep', '60'])
    try:
        (sd/LOCK_FILE).write_text(json.dumps({'pid': other.pid, 'host': socket.gethostname(), 'started': '2026-01-01T00:00:00',
                                              'command': 'babyvlm study --profile quick'}))
        r = _cli('study', '--profile', 'quick', '--conditions', 'home', '--out', tmp_path, '--no-report')
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"is in use by another study: pid {other.pid} on {socket.gethostname()}, started 2026-01-01T00:00:00" in r.stderr, r.stderr
        assert sorted(p.name for p in sd.iterdir()) == [LOCK_FILE]   # nothing written
    finally: other.kill(); other.wait()


# ---- checkpoints: a full disk, a corrupt last one -------------------------------------------------------------------
@pytest.fixture(scope='module')
def toy():
    from babyvlm.testing import toy_pairs
    return toy_pairs(96, seed=1), toy_pairs(32, seed=2)


def _train(toy, out, hook=None, **kw):
    from babyvlm.families import ContrastiveParams, get_family
    from babyvlm.models.contrastive import ContrastiveConfig, load_contrastive
    cfg = TrainConfig(**{**dict(max_steps=20, batch_size=16, lr=2e-3, warmup_steps=3, eval_every=5, ckpt_every=5, keep_checkpoints=2,
                                val_batch_size=16, progress=False, tensorboard=False), **kw})
    s = get_family('contrastive').train(ContrastiveParams(model=ContrastiveConfig(arch='cvcl_vit_tiny', image_size=32), train=cfg,
                                                          images=ImageConfig()), *toy, out, on_step=hook)
    return load_contrastive(out)[0], s


def _same(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()): assert torch.equal(x, y), k


def test_disk_full_during_a_checkpoint_write(toy, tmp_path, monkeypatch):
    "The checkpoint being written is removed, the earlier ones stay, the error says what happened; the rerun resumes."
    import accelerate
    real, calls = accelerate.Accelerator.save_state, []
    def save_state(self, output_dir=None, **kw):
        calls.append(output_dir)
        if len(calls) == 2:   # the second checkpoint (step 10): half written, then the disk is full
            Path(output_dir).mkdir(parents=True, exist_ok=True); (Path(output_dir)/'model.safetensors').write_bytes(b'\0' * 100)
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(self, output_dir, **kw)
    monkeypatch.setattr(accelerate.Accelerator, 'save_state', save_state)
    with pytest.raises(OSError, match=r"no space left on the device while writing checkpoint .*step_10; the earlier checkpoints were kept"):
        _train(toy, tmp_path/'a')
    ck = tmp_path/'a'/'contrastive'/'checkpoints'
    assert sorted(p.name for p in ck.iterdir()) == ['step_5']   # no partial folder
    monkeypatch.setattr(accelerate.Accelerator, 'save_state', real)
    m, s = _train(toy, tmp_path/'a')
    assert s['resumed_from'] == 5 and s['steps'] == 20


def test_corrupt_last_checkpoint_falls_back_to_the_one_before(toy, tmp_path):
    from babyvlm.testing import Interrupt, kill_at
    m1, _ = _train(toy, tmp_path/'full')
    with pytest.raises(Interrupt): _train(toy, tmp_path/'k', hook=kill_at(13))
    ck = tmp_path/'k'/'contrastive'/'checkpoints'
    assert sorted(p.name for p in ck.iterdir()) == ['step_10', 'step_5']
    f = ck/'step_10'/'model.safetensors'; f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 3])   # truncated
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        m2, s = _train(toy, tmp_path/'k')
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    assert any(f"checkpoint {ck/'step_10'} cannot be read" in m and 'falling back to step_5' in m for m in msgs), msgs
    assert s['resumed_from'] == 5 and s['steps'] == 20
    _same(m1, m2)   # the same weights as the run that was never interrupted
    assert (ck/'.step_10.corrupt').is_dir()   # set aside for a person to look at, not used again
