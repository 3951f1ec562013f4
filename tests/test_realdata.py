"Real data from files: SAYCam (CVCL layout), LCS-558K (LLaVA layout), DINO and open_clip weights, data parameters."
import argparse, json, os
from pathlib import Path
import pytest, torch
from PIL import Image
from babyvlm.core import ParamsError, project_root
from babyvlm.compose import PAIR_FEATURES
from babyvlm.realdata import (RealDataError, LCS_FILE, clean_utterance, load_saycam, load_lcs, read_saycam_entries,
                              load_state_file, load_dino_resnext50, init_vision_from_dino, load_open_clip_local,
                              expand_env, load_data_params, load_real_sources, RealDataConfig)


def _img(p, size=(10, 8), shade=0):
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, (shade, 80, 120)).save(p, format='PNG')  # lossless, whatever the name says


@pytest.fixture
def saycam(tmp_path):
    root = tmp_path/'S_multimodal'
    meta = {'train': [{'utterance': 'Can you  SEE the car', 'frame_filenames': ['a_001_00.jpg', 'a_001_01.jpg'],
                       'timestamps': [1.0, 1.2]},
                      {'utterance': ' '.join(f'w{i}' for i in range(30)), 'frame_filenames': ['a_002_00.jpg']}],
            'val': [{'utterance': 'good job', 'frame_filenames': ['a_003_00.jpg', 'a_003_01.jpg', 'a_003_02.jpg']}],
            'test': [{'utterance': 'bye bye', 'frame_filenames': ['a_004_00.jpg']}]}
    for split, es in meta.items():
        root.mkdir(parents=True, exist_ok=True)
        (root/f'{split}.json').write_text(json.dumps({'data': es}))
        for e in es:
            for j, f in enumerate(e['frame_filenames']): _img(root/'train_5fps'/f, shade=50*j)
    return root


def test_saycam_rows_and_columns(saycam):
    dd = load_saycam(saycam, splits=('train', 'validation', 'test'))
    assert list(dd) == ['train', 'validation', 'test']
    tr = dd['train']
    assert tr.features == PAIR_FEATURES
    assert tr['text'][:2] == ['can you see the car'] * 2
    assert len(tr['text'][2].split()) == 25                                  # truncated to 25 tokens
    assert tr['asset_id'] == ['a_001_00.jpg', 'a_001_01.jpg', 'a_002_00.jpg']
    assert tr['group'] == ['train:0', 'train:0', 'train:1'] and set(tr['category']) == {''} and all(tr['aligned'])
    assert dd['validation']['asset_id'] == ['a_003_00.jpg']                  # first frame for evaluation splits
    assert tr[1]['image'].getpixel((0, 0)) == (50, 80, 120)                  # decoded lazily from the file
    raw = tr.cast_column('image', __import__('datasets').Image(decode=False))[0]['image']
    assert raw['bytes'] is None and raw['path'] == str(saycam/'train_5fps'/'a_001_00.jpg')
    assert load_saycam(saycam, frames='first', eval_frames=2)['validation']['asset_id'] == ['a_003_00.jpg', 'a_003_02.jpg']


def test_saycam_frames_dir_and_errors(saycam, tmp_path):
    (saycam/'train_5fps').rename(tmp_path/'frames')
    with pytest.raises(RealDataError, match='4 of 4 SAYCam frame'):                  # now looked for in root itself
        load_saycam(saycam)
    assert load_saycam(saycam, tmp_path/'frames')['train'].num_rows == 3
    (tmp_path/'frames'/'a_001_01.jpg').unlink(); (tmp_path/'frames'/'a_003_00.jpg').unlink()
    with pytest.raises(RealDataError, match=r"2 of 4 SAYCam frame\(s\) missing .*train.json entry 0: 'a_001_01.jpg'; val.json entry 0: 'a_003_00.jpg'"):
        load_saycam(saycam, tmp_path/'frames')
    dd = load_saycam(saycam, tmp_path/'frames', on_missing='drop', eval_frames='all')
    assert (dd['train'].num_rows, dd['validation'].num_rows, dd.n_missing) == (2, 2, 2)
    with pytest.raises(RealDataError, match="split 'validation'.*no pair left"):
        load_saycam(saycam, tmp_path/'frames', on_missing='drop')
    (saycam/'val.json').write_text('{"data": [{"utterance": "hi", "frame_filenames": []}]}')
    with pytest.raises(RealDataError, match="val.json entry 0: 'frame_filenames' must be a non-empty list"):
        read_saycam_entries(saycam/'val.json')
    (saycam/'val.json').write_text('{"data": [{"utterance": 3, "frame_filenames": ["x.jpg"]}]}')
    with pytest.raises(RealDataError, match="val.json entry 0: 'utterance' must be a non-empty string, got 3"):
        read_saycam_entries(saycam/'val.json')
    (saycam/'val.json').write_text('{"data": [}')
    with pytest.raises(RealDataError, match='val.json: not valid JSON'):
        read_saycam_entries(saycam/'val.json')
    (saycam/'val.json').unlink()
    with pytest.raises(RealDataError, match='val.json: file not found'):
        load_saycam(saycam, tmp_path/'frames')


@pytest.fixture
def lcs(tmp_path):
    root = tmp_path/'LLaVA-Pretrain'; items = []
    for i in range(6):
        rel = f'{i // 3:05d}/{i:09d}.jpg'; _img(root/'images'/rel, (12, 12), 20*i)
        items.append({'id': f'{i:09d}', 'image': rel, 'conversations': [
            {'from': 'human', 'value': '<image>\nWrite a terse but informative summary of the picture.'},
            {'from': 'gpt', 'value': f' caption number {i} '}]})
    (root/LCS_FILE).write_text(json.dumps(items))
    return root


def test_lcs(lcs):
    dd = load_lcs(lcs)
    tr = dd['train']
    assert tr.features == PAIR_FEATURES and tr.num_rows == 6 and list(dd) == ['train']
    assert tr['text'][0] == 'caption number 0' and tr['asset_id'][4] == '00001/000000004.jpg' and tr['group'][4] == '000000004'
    assert tr[5]['image'].getpixel((0, 0)) == (100, 80, 120)
    a, b = load_lcs(lcs, n_val=2, max_pairs=3, seed=3), load_lcs(lcs/LCS_FILE, n_val=2, max_pairs=3, seed=3)
    assert (a['train'].num_rows, a['validation'].num_rows) == (3, 2) and a['train']['group'] == b['train']['group']
    assert not set(a['train']['group']) & set(a['validation']['group'])
    with pytest.raises(RealDataError, match='not more than n_val=6'):
        load_lcs(lcs, n_val=6)


def test_lcs_errors(lcs):
    (lcs/'images'/'00000'/'000000001.jpg').unlink(); (lcs/'images'/'00001'/'000000005.jpg').unlink()
    with pytest.raises(RealDataError, match=r"2 of 6 LCS-558K image\(s\) missing .*entry 1: '00000/000000001.jpg'; .*entry 5"):
        load_lcs(lcs)
    assert load_lcs(lcs, on_missing='drop')['train'].num_rows == 4
    items = json.loads((lcs/LCS_FILE).read_text())
    items[2]['conversations'] = [{'from': 'human', 'value': '<image>'}]
    (lcs/LCS_FILE).write_text(json.dumps(items))
    with pytest.raises(RealDataError, match=r'blip_laion_cc_sbu_558k.json entry 2: expected a turn \{"from": "gpt"'):
        load_lcs(lcs, on_missing='drop')
    items[2] = {'id': '2', 'conversations': []}
    (lcs/LCS_FILE).write_text(json.dumps(items))
    with pytest.raises(RealDataError, match="entry 2: 'image' must be a relative image path"):
        load_lcs(lcs, on_missing='drop')
    with pytest.raises(RealDataError, match='image folder'):
        load_lcs(lcs, images_dir=lcs/'nope')


class _Evil:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_checkpoints_never_run_code(tmp_path):
    torch.save({'teacher': {'x': _Evil(tmp_path/'ran')}}, tmp_path/'evil.pth')
    with pytest.raises(RealDataError, match='refused to load with weights_only=True'):
        load_state_file(tmp_path/'evil.pth')
    with pytest.raises(RealDataError, match='refused'):
        load_dino_resnext50(tmp_path/'evil.pth', arch='resnet18')
    assert not (tmp_path/'ran').exists()
    with pytest.raises(RealDataError, match='file not found'):
        load_state_file(tmp_path/'none.pth')


@pytest.fixture(scope='module')
def resnet18_sd():
    import torchvision
    torch.manual_seed(1)
    m = torchvision.models.resnet18(weights=None); m.fc = torch.nn.Identity()
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_dino_checkpoint_layouts(tmp_path, resnet18_sd):
    head = {'head.mlp.0.weight': torch.zeros(4, 512), 'head.last_layer.weight_v': torch.zeros(8, 4)}
    layouts = {'ddp_wrapped': {'teacher': {**{f'module.backbone.{k}': v for k, v in resnet18_sd.items()},
                                          **{f'module.{k}': v for k, v in head.items()}},
                               'student': {}, 'epoch': 3, 'args': argparse.Namespace(arch='resnet18', lr=5e-4)},
               'wrapper_only': {'teacher': {**{f'backbone.{k}': v for k, v in resnet18_sd.items()}, **head}},
               'bare': dict(resnet18_sd)}
    for name, ck in layouts.items():
        torch.save(ck, tmp_path/f'{name}.pth')
        m = load_dino_resnext50(tmp_path/f'{name}.pth', arch='resnet18')
        assert not m.training
        for k, v in m.state_dict().items(): assert torch.equal(v, resnet18_sd[k]), (name, k)
    bad = {f'module.backbone.{k}': v for k, v in resnet18_sd.items() if not k.startswith('layer4.1.')}
    bad['module.backbone.proj.weight'] = torch.zeros(1)
    torch.save({'teacher': bad}, tmp_path/'bad.pth')
    with pytest.raises(RealDataError, match=r"missing key\(s\): \['layer4.1.conv1.weight'.*1 unexpected key\(s\): \['proj.weight'\]"):
        load_dino_resnext50(tmp_path/'bad.pth', arch='resnet18')
    torch.save({'teacher': {**resnet18_sd, 'conv1.weight': torch.zeros(64, 3, 3, 3)}}, tmp_path/'shape.pth')
    with pytest.raises(RealDataError, match=r"mis-shaped key\(s\): \['conv1.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)'\]"):
        load_dino_resnext50(tmp_path/'shape.pth', arch='resnet18')


def test_dino_into_cvcl_tower(tmp_path, resnet18_sd):
    from babyvlm.models.contrastive import arch_config, model_from_config
    torch.save({'teacher': {f'module.backbone.{k}': v for k, v in resnet18_sd.items()}}, tmp_path/'d.pth')
    mc = arch_config('cvcl_resnext50'); mc['vision_cfg'].update(timm_model_name='resnet18', image_size=32)
    mc['text_cfg']['vocab_size'] = 12
    m = init_vision_from_dino(model_from_config(mc), tmp_path/'d.pth')
    for k, v in m.visual.trunk.state_dict().items(): assert torch.equal(v, resnet18_sd[k]), k
    out = m(torch.zeros(2, 3, 32, 32), torch.ones(2, 4, dtype=torch.long))
    assert out['image_features'].shape == (2, mc['embed_dim'])


def test_open_clip_local(tmp_path):
    import open_clip
    from safetensors.torch import save_file
    from babyvlm.testing import register_tiny_clip
    register_tiny_clip(tmp_path/'cfg', 'tiny-clip-pytest')
    torch.manual_seed(0); ref = open_clip.create_model('tiny-clip-pytest')
    sd = ref.state_dict()
    torch.save({f'module.{k}': v for k, v in sd.items()}, tmp_path/'w.bin')
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path/'w.safetensors'))
    for f in ('w.bin', 'w.safetensors'):
        m, _, pre = load_open_clip_local('tiny-clip-pytest', tmp_path/f)
        for k, v in m.state_dict().items(): assert torch.equal(v, sd[k]), (f, k)
    torch.save({'state_dict': {'visual.x': _Evil(tmp_path/'ran')}}, tmp_path/'evil.pt')
    with pytest.raises(RealDataError, match='refused'):
        load_open_clip_local('tiny-clip-pytest', tmp_path/'evil.pt')
    assert not (tmp_path/'ran').exists()
    with pytest.raises(ValueError, match='unknown open_clip model'):
        load_open_clip_local('no-such-model', tmp_path/'w.bin')


def test_data_params(tmp_path, saycam, lcs):
    params = project_root()/'params'
    with pytest.raises(ParamsError, match=r"saycam_dir' uses \$\{SAYCAM_DIR\}, which is not set"):
        load_data_params('saycam', params, env={})
    c = load_data_params('saycam', params, env={'SAYCAM_DIR': str(saycam), 'LCS_JSON': str(lcs/LCS_FILE)})
    assert (c.saycam_dir, c.lcs_json, c.on_missing, c.saycam_frames) == (str(saycam), str(lcs/LCS_FILE), 'error', 'all')
    src = load_real_sources(c)
    assert list(load_real_sources(c, ['lcs'])) == ['lcs']
    with pytest.raises(ParamsError, match=r"\['lcs'\] asked for but not configured"):
        load_real_sources(RealDataConfig(saycam_dir=str(saycam)))
    assert src['saycam']['train'].num_rows == 3 and src['lcs']['train'].num_rows == 6
    (tmp_path/'p'/'data').mkdir(parents=True)
    (tmp_path/'p'/'data'/'mine.yaml').write_text('saycam_dir: ${SAYCAM_DIR}\nsaycam_frames: 4\n')
    (tmp_path/'p'/'data'/'mine.local.yaml').write_text(f'saycam_dir: {saycam}\n')          # local file wins, no env needed
    c = load_data_params('mine', tmp_path/'p', env={})
    assert c.saycam_dir == str(saycam) and c.saycam_frames == 4
    (tmp_path/'p'/'data'/'mine.local.yaml').write_text('saycam_dir: /x\nlcs_jsn: /y\n')
    with pytest.raises(ParamsError, match="unknown key 'lcs_jsn'"):
        load_data_params('mine', tmp_path/'p', env={})
    assert expand_env(['${A:-d}', '${A}x', 1], env={'A': 'v'}) == ['v', 'vx', 1]
    assert clean_utterance('A  b\nC') == 'a b c'


def test_paper_profile_loads():
    "The paper profile: one section per family (CVCL and BabyLLaVA-GPT2), DINO paths left for the training to expand."
    from babyvlm.study import load_params
    from babyvlm.models.generative import PAPER_GPT2
    p = load_params('paper', 'home')
    assert p.families == ['contrastive', 'generative'] and p.family == 'contrastive'
    c = p.contrastive
    assert (c.model.arch, c.model.image_size, c.model.embed_dim, c.model.temperature, c.model.learn_temperature) == \
        ('cvcl_resnext50', 224, 512, 0.07, False)
    assert (c.train.batch_size, c.train.lr, c.train.weight_decay, c.train.patience, c.train.select) == (8, 1e-4, 0.1, 5, 'best')
    assert (c.images.crop_scale, c.images.flip_p, c.images.blur_p) == ((0.2, 1.0), 0.5, 0.5)
    assert c.init_vision == '${SAYCAM_DINO_CKPT}'                   # expanded when the run trains (an unset variable is an error then)
    g = p.generative
    assert g.model == PAPER_GPT2 and g.vision == '${SAYCAM_DINO_CKPT}' and (g.dino_arch, g.dino_image_size, g.dino_grid) == ('resnext50_32x4d', 224, 7)
    assert [(t.lr, t.batch_size, t.betas) for t in (g.language, g.projector, g.full)] == \
        [(5e-4, 128, (0.9, 0.95)), (3e-3, 128, (0.9, 0.95)), (2e-4, 128, (0.9, 0.95))]
    assert g.feature_dtype == 'float16' and p.world.labeled_s_per_category == 100
    # every training section carries the run's seed
    q = load_params('paper', 'home', seed=3)
    assert {q.contrastive.train.seed, q.generative.language.seed, q.generative.full.seed, q.generative.ssl_train.seed} == {3}


def test_init_vision_through_the_family(tmp_path, monkeypatch):
    "contrastive.init_vision: $VARS expanded (an unset one named), a tower without a timm trunk refused, a missing file named."
    from babyvlm.families import ContrastiveParams, get_family
    from babyvlm.models.contrastive import ContrastiveConfig
    from babyvlm.train import TrainConfig
    from babyvlm.testing import toy_pairs
    tr, va = toy_pairs(16, seed=0), toy_pairs(8, seed=1)
    cfg = TrainConfig(max_steps=1, batch_size=8, progress=False, tensorboard=False)
    fam = get_family('contrastive')
    monkeypatch.delenv('BABYVLM_TEST_DINO', raising=False)
    p = ContrastiveParams(ContrastiveConfig(arch='cvcl_resnext50', image_size=32), cfg, init_vision='$BABYVLM_TEST_DINO/d.pth')
    with pytest.raises(ValueError, match=r"contrastive.init_vision: '\$BABYVLM_TEST_DINO/d.pth' names an unset environment variable"):
        fam.train(p, tr, va, tmp_path/'a')
    monkeypatch.setenv('BABYVLM_TEST_DINO', str(tmp_path))
    with pytest.raises(RealDataError, match=f"checkpoint {tmp_path}/d.pth: file not found"): fam.train(p, tr, va, tmp_path/'b')
    from dataclasses import replace
    with pytest.raises(TypeError, match='has no visual.trunk'):
        fam.train(replace(p, model=ContrastiveConfig(image_size=32)), tr, va, tmp_path/'c')
    assert not any((tmp_path/d/'model.safetensors').exists() for d in 'abc')
