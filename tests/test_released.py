"""The released baby models from local files (issue 15): fixtures in exactly the released formats (random weights, the
real key names and shapes, reduced sizes) load; scores are batch-size invariant; the BabyLLaVA path equals a direct
re-implementation of babylmms-eval's one-request loop; a pickle that would run code is refused; a missing or mis-shaped
tensor is named; `babyvlm evaluate` scores the full-size item layout and prints the paper's table."""
import contextlib, io, json, os, builtins, subprocess
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from babyvlm.benchmarks import load_babylmms
from babyvlm.evaluate import EvalConfig, evaluate_items
from babyvlm.released import (load_released_babyllava, released_babyllava_scorer, load_cvcl_checkpoint, cvcl_scorer,
                              read_checkpoint_safely, PickleRefused, ReleasedFormatError)
from babyvlm.realdata import RealDataError
from babyvlm.testing import write_babyllava_fixture, write_cvcl_fixture, write_babylmms_fixture, write_dino_fixture, RunsCode
from babyvlm.cli import main

SMALL = dict(labeled_s=6, vtwt=8, baby_winoground=4, saycam_caption=4)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('released')
    c, im = write_babylmms_fixture(d/'bm', counts=SMALL, n_images=3)
    return dict(bl=write_babyllava_fixture(d/'bl'), cvcl=write_cvcl_fixture(d/'cvcl.ckpt'), csv=c, images=im, root=d)


@pytest.fixture(scope='module')
def babyllava(files):
    return load_released_babyllava(files['bl'])


def test_babyllava_folder_loads_with_the_file_s_tensors(files, babyllava):
    from safetensors.torch import load_file
    m, tok = babyllava
    sd = load_file(str(files['bl']/'model.safetensors'))
    assert torch.equal(m.lm.transformer.h[1].attn.c_attn.weight, sd['transformer.h.1.attn.c_attn.weight'])
    assert torch.equal(m.projector[2].bias, sd['transformer.mm_projector.2.bias'])
    assert torch.equal(m.vision.backbone.layer4[1].bn2.running_var, sd['transformer.vision_tower.vision_tower.layer4.1.bn2.running_var'])
    assert m.lm.lm_head.weight.data_ptr() == m.lm.transformer.wte.weight.data_ptr()   # tied, as the released model
    assert (m.n_image_tokens, m.vision.image_size, m.vision.spec['fit'], len(tok)) == (49, 224, 'pad', 2350)


def _items(files): return load_babylmms(files['csv'], files['images'])


def test_scores_do_not_depend_on_the_batch_size(files):
    items = {k: v for k, v in _items(files).items() if k != 'saycam_caption'}
    cfg = EvalConfig(n_boot=50)
    out, small = [], load_released_babyllava(files['bl'], image_size=64)   # (the rule does not depend on the input side)
    for bs in (1, 5, 64):
        _, preds = evaluate_items(released_babyllava_scorer(*small, bs), items, cfg)
        out.append(np.array([p['score_positive'] for p in preds['vtwt']] + [s for p in preds['labeled_s'] for s in p['scores']] +
                            [s for p in preds['baby_winoground'] for r in p['scores'] for s in r]))
    assert np.abs(out[0] - out[1]).max() < 1e-5 and np.abs(out[0] - out[2]).max() < 1e-5
    model, vocab, pre = load_cvcl_checkpoint(files['cvcl'], image_size=64)
    c = [np.array([p['score_positive'] for p in evaluate_items(cvcl_scorer(model, vocab, pre, bs), {'vtwt': items['vtwt']}, cfg)[1]['vtwt']])
         for bs in (1, 64)]
    assert np.abs(c[0] - c[1]).max() < 1e-5


# ---- babylmms-eval's one-request loop, re-implemented from the released format (not from babyvlm.released) ----
class HarnessBabyLLaVA:
    """The harness's BabyLLaVA on one request: LLaVA's expand2square with the image mean and a bilinear resize to 224,
    ImageNet normalisation, the ResNeXt layer4 map as 49 tokens, the mlp2x_gelu projector, and GPT-2 on
    [image tokens] + tokens('\\n' + ' ' + choice) with labels -100 on the image and the prompt: the loss is the mean
    NLL of the continuation tokens; captions: greedy, at most 25 new tokens, special tokens skipped."""
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, folder):
        import torchvision
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = json.loads((Path(folder)/'config.json').read_text())
        sd = load_file(str(Path(folder)/'model.safetensors'))
        pre = 'transformer.vision_tower.vision_tower.'
        self.tower = torchvision.models.resnet18(weights=None); self.tower.fc = torch.nn.Identity()
        self.tower.load_state_dict({k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}); self.tower.eval()
        self.proj = torch.nn.Sequential(torch.nn.Linear(cfg['mm_hidden_size'], cfg['n_embd']), torch.nn.GELU(),
                                        torch.nn.Linear(cfg['n_embd'], cfg['n_embd']))
        self.proj.load_state_dict({k[len('transformer.mm_projector.'):]: v for k, v in sd.items() if k.startswith('transformer.mm_projector.')})
        keys = {k for k in GPT2Config().to_dict()} | {'n_embd', 'n_layer', 'n_head', 'n_inner', 'n_positions', 'vocab_size'}
        self.lm = GPT2LMHeadModel(GPT2Config(**{k: v for k, v in cfg.items() if k in keys and k not in ('model_type', 'architectures', 'transformers_version')}))
        self.lm.load_state_dict({k: v for k, v in sd.items() if not k.startswith((pre, 'transformer.mm_projector.'))}, strict=False)
        self.lm.tie_weights(); self.lm.eval()
        self.tok = Tokenizer.from_file(str(Path(folder)/'tokenizer.json'))

    @torch.no_grad()
    def image_tokens(self, path):
        im = Image.open(path).convert('RGB'); w, h = im.size
        bg = Image.new('RGB', (max(w, h),) * 2, tuple(int(x * 255) for x in self.MEAN)); bg.paste(im, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
        x = torch.from_numpy(np.asarray(bg.resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255).permute(2, 0, 1)
        x = ((x - torch.tensor(self.MEAN)[:, None, None]) / torch.tensor(self.STD)[:, None, None])[None]
        t = self.tower
        f = t.layer4(t.layer3(t.layer2(t.layer1(t.maxpool(t.relu(t.bn1(t.conv1(x))))))))
        return self.proj(f.flatten(2).transpose(1, 2))

    @torch.no_grad()
    def loss(self, path, choice):
        ctx = self.tok.encode('\n').ids
        full = self.tok.encode('\n' + ' ' + choice).ids
        img = self.image_tokens(path)
        emb = torch.cat([img, self.lm.transformer.wte(torch.tensor([full]))], 1)
        labels = torch.tensor([[-100] * (img.shape[1] + len(ctx)) + full[len(ctx):]])
        return self.lm(inputs_embeds=emb, labels=labels).loss.item()

    @torch.no_grad()
    def caption(self, path, max_new_tokens=25):
        emb, out = torch.cat([self.image_tokens(path), self.lm.transformer.wte(torch.tensor([self.tok.encode('\n').ids], dtype=torch.long))], 1), []
        for _ in range(max_new_tokens):
            nxt = int(self.lm(inputs_embeds=emb).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == 3: break
            emb = torch.cat([emb, self.lm.transformer.wte(torch.tensor([[nxt]]))], 1)
        s = self.tok.decode(out, skip_special_tokens=True)
        for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            s = s.replace(a, b)
        return s


def test_babyllava_scores_equal_the_harness_one_request_loop(files, babyllava):
    h = HarnessBabyLLaVA(files['bl'])
    items = _items(files)
    res, preds = evaluate_items(released_babyllava_scorer(*babyllava, 4), {k: items[k] for k in ('vtwt', 'labeled_s')}, EvalConfig(n_boot=50))
    for it, p in list(zip(items['vtwt'], preds['vtwt']))[:4]:
        assert abs(-p['score_positive'] - h.loss(it.image, it.positive)) < 1e-4
        assert abs(-p['score_negative'] - h.loss(it.image, it.negative)) < 1e-4
    t, p = items['labeled_s'][0], preds['labeled_s'][0]
    for src, s in zip(t.images.sources, p['scores']): assert abs(-s - h.loss(src, t.target_category)) < 1e-4
    caps = released_babyllava_scorer(*babyllava, 3).generate([Image.open(it.image) for it in items['saycam_caption'][:3]], max_new_tokens=25)
    assert caps == [h.caption(it.image) for it in items['saycam_caption'][:3]]


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    flag = tmp_path/'pwned'
    for fn, what in ((os.system, 'system'), (builtins.eval, 'builtins.eval'), (builtins.exec, 'builtins.exec'), (subprocess.call, 'call')):
        ck = write_cvcl_fixture(tmp_path/'evil.ckpt', evil=RunsCode(fn, f'open({str(flag)!r}, "w")' if 'eval' in what or 'exec' in what else f'touch {flag}'))
        with pytest.raises(PickleRefused, match=f"refused to load: .*{what}.*can run code"): read_checkpoint_safely(ck)
        with pytest.raises(PickleRefused): load_cvcl_checkpoint(ck)
    assert not flag.exists()
    ok = read_checkpoint_safely(write_cvcl_fixture(tmp_path/'ok.ckpt'))   # unknown classes become inert stand-ins
    assert type(ok['hyper_parameters']['vision_encoder']).__module__ == 'multimodal.multimodal'


@pytest.mark.parametrize('kw,msg', [
    (dict(drop='transformer.h.0.ln_1.weight'), r"missing key\(s\): \['transformer.h.0.ln_1.weight'\]"),
    (dict(reshape='transformer.wpe.weight'), r"transformer.wpe.weight \(1025, 33\) vs \(1024, 32\)"),
    (dict(drop='transformer.mm_projector.0.bias'), r"missing key\(s\): \['transformer.mm_projector.0.bias'\]"),
    (dict(reshape='transformer.vision_tower.vision_tower.conv1.weight'), r"conv1.weight \(65, 4, 8, 8\) vs \(64, 3, 7, 7\)"),
])
def test_a_missing_or_mis_shaped_tensor_is_named(tmp_path, kw, msg):
    with pytest.raises(RealDataError, match=msg): load_released_babyllava(write_babyllava_fixture(tmp_path/'bad', **kw))


def test_cvcl_missing_tensor_and_bad_config_are_named(tmp_path, files):
    ck = torch.load(files['cvcl'], weights_only=False) if False else None   # (never unpickled with torch.load: it names missing classes)
    sd_ck = read_checkpoint_safely(files['cvcl'])
    sd = {k: v for k, v in sd_ck['state_dict'].items() if k != 'vision_encoder.model.layer2.0.bn1.weight'}
    torch.save({'state_dict': sd}, tmp_path/'cut.ckpt')
    with pytest.raises(RealDataError, match=r"vision_encoder.model.layer2.0.bn1.weight"): load_cvcl_checkpoint(tmp_path/'cut.ckpt')
    cfg = json.loads((files['bl']/'config.json').read_text())
    bad = tmp_path/'badcfg'; bad.mkdir()
    for f in ('model.safetensors', 'tokenizer.json'): (bad/f).symlink_to(files['bl']/f)
    (bad/'config.json').write_text(json.dumps({**cfg, 'mm_hidden_size': 2048}))
    with pytest.raises(ReleasedFormatError, match="'mm_hidden_size' is 2048 but the tower"): load_released_babyllava(bad)
    (bad/'config.json').write_text(json.dumps({**cfg, 'mm_vision_select_feature': 'cls_patch'}))
    with pytest.raises(ReleasedFormatError, match="'mm_vision_select_feature' is 'cls_patch'"): load_released_babyllava(bad)


def test_dino_replaces_the_tower(tmp_path, files):
    dp = write_dino_fixture(tmp_path/'dino.pth', seed=3)
    teacher = torch.load(dp, weights_only=True)['teacher']
    m, _ = load_released_babyllava(files['bl'], dino=dp)
    assert torch.equal(m.vision.backbone.layer1[0].conv1.weight, teacher['module.backbone.layer1.0.conv1.weight'])
    c, _, _ = load_cvcl_checkpoint(files['cvcl'], dino=dp)
    assert torch.equal(c.visual.trunk.layer1[0].conv1.weight, teacher['module.backbone.layer1.0.conv1.weight'])


def test_cli_scores_the_full_size_item_layout_and_prints_the_paper_table(tmp_path, files):
    c, im = write_babylmms_fixture(tmp_path/'full', n_images=2)   # 2,200 / 967 / 365 / 294 items, small images
    assert [len(v) for v in load_babylmms(c, im).values()] == [2200, 967, 365, 294]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(['evaluate', '--babyllava', str(files['bl']), '--babylmms', str(c), '--images', str(im), '--out', str(tmp_path/'o'),
                   '--ties', 'harness', '--batch-size', '128'])
    assert rc == 0, out.getvalue()
    text = out.getvalue()
    head = next(l for l in text.splitlines() if l.startswith('model'))
    assert head.split()[1:] == ['Labeled-S', 'VTWT', 'Baby', 'Winoground', '(group)', 'Caption', 'METEOR']
    assert 'paper: BabyLLaVA-GPT2 (SAYCam only' in text and 'ties: harness' in text
    m = json.loads((tmp_path/'o'/'metrics.json').read_text())
    assert m['ties'] == 'harness' and m['family'] == 'released_babyllava'
    assert (m['labeled_s']['n_trials'], m['vtwt']['n_items'], m['baby_winoground']['n_items'], m['saycam_caption']['n_items']) == (2200, 967, 365, 294)
    assert m['labeled_s']['ties'] == m['vtwt']['ties'] == 'harness'
    assert len((tmp_path/'o'/'vtwt_predictions.jsonl').read_text().splitlines()) == 967
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(['evaluate', '--cvcl', str(files['cvcl']), '--babylmms', str(c), '--images', str(im), '--out', str(tmp_path/'oc'),
                   '--benchmarks', 'labeled_s', 'vtwt', 'baby_winoground'])
    assert rc == 0 and 'paper: CVCL (SAYCam only' in out.getvalue() and 'ties: strict' in out.getvalue()
    assert json.loads((tmp_path/'oc'/'metrics.json').read_text())['vtwt']['ties'] == 'strict'


def test_cli_refuses_options_it_would_ignore(files, capsys):
    base = ['evaluate', '--out', str(files['root']/'x')]
    for argv, msg in ((['--babyllava', str(files['bl']), '--checkpoint', 'f'], '--checkpoint is the weights of --open-clip'),
                      (['--open-clip', 'ViT-B-32', '--dino', 'f'], '--dino replaces the vision tower'),
                      (['--babyllava', str(files['bl']), '--vocab', 'v'], '--vocab is the vocabulary of --cvcl'),
                      (['--cvcl', str(files['cvcl']), '--profile', 'quick', '--babylmms', str(files['csv']), '--images', str(files['images'])],
                       '--profile names the embedded world'),
                      (['--babyllava', str(files['root']/'nothing'), '--babylmms', str(files['csv']), '--images', str(files['images'])], 'not a folder')):
        assert main(base + argv) == 2
        assert msg in capsys.readouterr().err


def test_the_paper_profile_s_models_start_from_the_given_dino_weights(tmp_path, monkeypatch):
    """params/profiles/paper.yaml: CVCL's image tower is initialised from ${SAYCAM_DINO_CKPT} (then fine-tuned) and
    BabyLLaVA's frozen tower is that checkpoint's teacher. With lr 1e-30 (lr 0 is refused) a step moves a weight by about 1e-30 at most, so the trained models' weights are
    the file's (the conv weights: batch-norm statistics move in training mode)."""
    from babyvlm.study import load_params, run_params
    from babyvlm.families import get_family, family_params
    from babyvlm.models.contrastive import load_contrastive
    from babyvlm.models.generative import load_generative
    from babyvlm.testing import toy_pairs
    dp = write_dino_fixture(tmp_path/'dino_s_resnext50.pth', arch='resnext50_32x4d', seed=5)
    teacher = {k[len('module.backbone.'):]: v for k, v in torch.load(dp, weights_only=True)['teacher'].items() if k.startswith('module.backbone.')}
    monkeypatch.setenv('SAYCAM_DINO_CKPT', str(dp))
    tr, va = toy_pairs(16, seed=0), toy_pairs(8, seed=1)
    small = ['contrastive.model.image_size=32', 'contrastive.train.max_steps=1', 'contrastive.train.lr=1.0e-30', 'contrastive.train.batch_size=8',
             'contrastive.train.eval_every=1', 'contrastive.train.ckpt_every=1', 'contrastive.train.val_batch_size=8',
             'contrastive.train.num_workers=0', 'contrastive.train.sync_batchnorm=false', 'contrastive.images.preload_max_gb=1']
    p = load_params('paper', 'home', 0, small)
    assert p.contrastive.init_vision == '${SAYCAM_DINO_CKPT}' and p.contrastive.model.arch == 'cvcl_resnext50'
    fam = get_family('contrastive')
    fam.train(family_params(fam, run_params(p), None), tr, va, tmp_path/'cvcl')
    m, _ = load_contrastive(tmp_path/'cvcl')
    convs = [k for k in teacher if k.endswith('conv1.weight') or k.endswith('conv3.weight')]
    assert all(torch.allclose(m.visual.trunk.state_dict()[k], teacher[k], rtol=0, atol=1e-25) for k in convs)   # moved by <= ~1e-30
    phases = [f'generative.{ph}.{k}={v}' for ph in ('language', 'projector', 'full')
              for k, v in (('max_steps', 1), ('lr', '1.0e-30'), ('batch_size', 8), ('eval_every', 1), ('ckpt_every', 1))]
    g = load_params('paper', 'home', 0, ['family=generative', 'generative.dino_image_size=32', 'generative.dino_grid=1', *phases])
    assert g.generative.vision == '${SAYCAM_DINO_CKPT}'
    fam = get_family('generative')
    fam.train(family_params(fam, run_params(g), None), tr, va, tmp_path/'gen')
    gm, _ = load_generative(tmp_path/'gen')
    assert gm.vision.spec['arch'] == 'resnext50_32x4d'
    assert all(torch.equal(gm.vision.backbone.state_dict()[k], v) for k, v in teacher.items())   # frozen: every tensor is the file's
