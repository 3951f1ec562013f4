"""Generative models through the family registry: tokenizer, vision encoders (SimCLR, DINO layout), loss masking,
batch-size invariance of scores and captions, the phases on the engine, exact resume, I/O, CoCa (hybrid)."""
import json, os
from dataclasses import replace
from pathlib import Path
import numpy as np, pytest, torch
from safetensors.torch import load_model
from babyvlm.core import ParamsError, seed_everything
from babyvlm.text import tokenize, PAD, UNK, SOS, EOS, WordTokenizer, build_tokenizer
from babyvlm.train import TrainConfig, ImageConfig, pair_tensors
from babyvlm.testing import toy_pairs, kill_at, Interrupt, write_dino_fixture
from babyvlm.realdata import RealDataError, load_dino_resnext50
from babyvlm.models.vision import SSLConfig, VisionTower, vision_from_spec, dino_vision, save_vision, load_vision
from babyvlm.models.generative import (GenerativeConfig, create_generative, build_labels, lm_loss, save_generative,
                                       load_generative)
from babyvlm.models.hybrid import CoCaConfig, create_coca, load_coca
from babyvlm.evaluate import GenerativeScorer, CoCaScorer
from babyvlm.families import (GenerativeParams, HybridParams, get_family, detect_family, check_generative, trained_params)

TINY = GenerativeConfig(n_embd=32, n_layer=1, n_head=2, n_inner=64, dropout=0.0)
CNN = dict(kind='cnn', widths=[8, 16], image_size=32, grid=2, mean=[0.5] * 3, std=[0.25] * 3)
SSL = SSLConfig(widths=(8, 16), image_size=32, grid=2, proj_dim=16)
# texts of different lengths (padding matters), an empty one, unknown words
TEXTS = ['look at the red ball', 'a door', '', 'can you see the blue window ?', 'zzz qqq ball', 'the table is green'] * 2
TASKS = ['phase0_vision', 'phase0_language', 'phase1_projector', 'phase2_full']
PC = dict(batch_size=16, warmup_steps=2, tensorboard=False, progress=False)


def _params(ssl_steps=10, language=20, projector=20, full=20, every=10, **kw):
    "Tiny BabyLLaVA params: SimCLR CNN, then the three phases (each `every` steps evaluated and checkpointed)."
    pc = dict(PC, eval_every=every, ckpt_every=every)
    ssl_pc = dict(pc, eval_every=max(1, every // 2))   # two evaluations at least: a first and a last training loss
    kw.setdefault('vision', 'ssl')   # SimCLR on the run's own images (the study's default is the world's shared encoder)
    return GenerativeParams(TINY, ssl=SSL, ssl_train=TrainConfig(max_steps=ssl_steps, lr=3e-3, select='last', **ssl_pc),
                            language=TrainConfig(max_steps=language, lr=5e-3, select='last', **pc),
                            projector=TrainConfig(max_steps=projector, lr=5e-3, select='last', **pc),
                            full=TrainConfig(max_steps=full, lr=2e-3, select='last', **pc), **kw)


@pytest.fixture(scope='module')
def data():
    tr, va = toy_pairs(64, seed=0), toy_pairs(16, seed=1)
    return tr, va, build_tokenizer(tr['text'])


@pytest.fixture(scope='module')
def model(data, tmp_path_factory):
    "A briefly trained BabyLLaVA, through the registry (so that scores and captions are not uniform)."
    tr, va, _ = data
    seed_everything(0, threads=1)
    out = tmp_path_factory.mktemp('gen')
    res = get_family('generative').train(_params(), tr, va, out)
    loaded = get_family('generative').load(out)
    return loaded.model, res, loaded


def _images(va, n=12): return [va[i % len(va)]['image'] for i in range(n)]


def _same_state(a, b, atol):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa: torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=0, msg=k)


def test_tokenizer_specials_and_splitting(data, tmp_path):
    tok = data[2]
    assert [tok.tk.id_to_token(i) for i in range(4)] == ['<pad>', '<unk>', '<sos>', '<eos>']
    s = "That's Mommy's BALL... isn't it?"
    assert [tok.tk.id_to_token(i) for i in tok.ids(s)[1:-1]] == tokenize(s)
    assert tok.ids('') == [SOS, EOS] and tok.ids('qqqzz')[1] == UNK
    ids, lens = tok.encode(['a ball', 'look at the red ball'])
    assert ids[0].tolist() == [SOS, tok.tk.token_to_id('a'), tok.tk.token_to_id('ball'), EOS, PAD, PAD, PAD] and lens.tolist() == [4, 7]
    assert len(tok.ids('ball ' * 100)) == 27 and tok.ids('ball ' * 100)[-1] == EOS
    tok2 = WordTokenizer.load(tok.save(tmp_path/'tokenizer.json'))
    assert len(tok2) == len(tok) and tok2.context_length == 27 and tok2.ids(s) == tok.ids(s)
    assert 'hat' in json.loads((tmp_path/'tokenizer.json').read_text())['model']['vocab']  # the child vocabulary is in
    with pytest.raises(FileNotFoundError, match='tokenizer file not found'): WordTokenizer.load(tmp_path/'nope.json')
    (tmp_path/'bad.json').write_text('{"x": 1}')
    with pytest.raises(ValueError, match='bad.json'): WordTokenizer.load(tmp_path/'bad.json')


def test_labels_mask_image_and_prompt(data):
    tok = data[2]
    ids, _ = tok.encode(['look at the red ball', 'a door'])
    seed_everything(0, threads=1)
    m = create_generative(TINY, vision_from_spec(CNN), tok).eval()
    k = m.n_image_tokens
    lab = build_labels(ids, k)
    assert (lab[:, :k + 1] == -100).all()  # image positions and <sos>
    assert lab[1, k + 1:].tolist() == ids[1, 1:4].tolist() + [-100] * 3  # 'a door <eos>', then padding
    f = torch.randn(2, k, m.vision.feature_dim)
    logits = m(ids, f)
    ref = lm_loss(logits, lab, per_row=True)
    # the logits at image positions have no effect on the loss (their labels are -100)
    g = logits.clone(); g[:, :k - 1] = 1e3 * torch.randn_like(g[:, :k - 1])
    torch.testing.assert_close(lm_loss(g, lab, per_row=True), ref)
    # row 1 = mean CE of 'a', 'door', <eos> predicted from positions <sos>, 'a', 'door'
    torch.testing.assert_close(ref[1], torch.nn.functional.cross_entropy(logits[1, k:k + 3], ids[1, 1:4]))
    # tokens after <eos> (padding) do not change the earlier logits
    ids2 = ids.clone(); ids2[1, 4:] = 7
    torch.testing.assert_close(m(ids2, f)[1, :k + 4], logits[1, :k + 4], atol=1e-5, rtol=0)


def test_scores_do_not_depend_on_batch_size(data, model):
    m, _, loaded = model
    ims = _images(data[1])
    ref = GenerativeScorer(m, data[2], batch_size=64).score(ims, TEXTS)
    for bs in (1, 5):
        np.testing.assert_allclose(GenerativeScorer(m, data[2], batch_size=bs).score(ims, TEXTS), ref, atol=1e-5, rtol=0)
        # the family's scorer is this scorer on the run folder's model and tokenizer
        np.testing.assert_allclose(get_family('generative').scorer(loaded, bs).score(ims, TEXTS), ref, atol=1e-5, rtol=0)
    assert ref.shape == (12,) and np.all(np.isfinite(ref)) and np.all(ref < 0) and ref.std() > 0.1
    # a known text at the right image scores higher than garbage
    assert ref[0] > ref[4]


def test_blind_scorer_ignores_the_image(data, model):
    m, _, loaded = model
    ims = _images(data[1])
    b = GenerativeScorer(m, data[2], blind=True)
    np.testing.assert_allclose(b.score(ims, TEXTS), b.score(ims[::-1], TEXTS), atol=0, rtol=0)
    fb = get_family('generative').blind(loaded, 4, [])   # the family's blind control is the same text-only model
    np.testing.assert_allclose(fb.score(ims[::-1], TEXTS), b.score(ims, TEXTS), atol=1e-5, rtol=0)
    s = GenerativeScorer(m, data[2])
    assert not np.allclose(s.score(ims, TEXTS), s.score(ims[::-1], TEXTS))  # the sighted one does not
    with pytest.raises(ValueError, match='12 images but 2 texts'): s.score(ims, TEXTS[:2])


def test_generation_deterministic_and_batch_invariant(data, model):
    m, _, loaded = model
    ims = _images(data[1], 8)
    g = GenerativeScorer(m, data[2], batch_size=8).generate(ims)
    assert g == GenerativeScorer(m, data[2], batch_size=1).generate(ims) == GenerativeScorer(m, data[2], batch_size=3).generate(ims)
    assert get_family('generative').captioner(loaded, 3, [])(ims) == g   # the family's captioner: greedy, 25 tokens
    assert len(g) == 8 and all(isinstance(c, str) and '<eos>' not in c and '<sos>' not in c for c in g)
    assert all(len(c.split()) <= 4 for c in GenerativeScorer(m, data[2]).generate(ims, max_new_tokens=4))
    with pytest.raises(ValueError, match='max_new_tokens=40'): GenerativeScorer(m, data[2]).generate(ims, 40)


def test_training_lowers_each_phase_loss(model):
    m, res, loaded = model
    assert list(res['tasks']) == TASKS
    for k, r in res['tasks'].items(): assert r['final_train_loss'] < r['first_train_loss'], (k, r)
    assert res['steps'] == 10 + 20 + 20 + 20 and res['tasks']['phase2_full']['selected'] == 'last'
    # each phase trains what it should: the projector alone in phase 1, projector + GPT-2 in phase 2, never the vision
    n_proj, n_lm = sum(p.numel() for p in m.projector.parameters()), sum(p.numel() for p in m.lm.parameters())
    assert res['tasks']['phase0_language']['n_trainable'] == n_lm
    assert res['tasks']['phase1_projector']['n_trainable'] == n_proj
    assert res['tasks']['phase2_full']['n_trainable'] == n_proj + n_lm == trained_params(loaded)
    assert detect_family(loaded.run_dir).name == 'generative' and m.vision.spec['trained'] == 'simclr'
    # the run folder: every task's folder, the SimCLR encoder, the model, a merged log of all tasks
    assert {p.name for p in loaded.run_dir.iterdir()} >= {*TASKS, 'vision', 'model.safetensors', 'model_config.json',
                                                           'tokenizer.json', 'train_log.jsonl'}
    log = [json.loads(l) for l in (loaded.run_dir/'train_log.jsonl').read_text().splitlines()]
    assert [(r['task'], r['step']) for r in log] == [('phase0_vision', 5), ('phase0_vision', 10)] + [(t, s) for t in TASKS[1:] for s in (10, 20)]
    torch.testing.assert_close(load_vision(loaded.run_dir/'vision').backbone.state_dict(), m.vision.backbone.state_dict(), atol=0, rtol=0)


def test_phase_resume_after_kill_is_exact(data, tmp_path):
    tr, va, _ = data
    p = _params(ssl_steps=8, language=12, projector=0, full=6, every=5)
    def run(d, hook=None, params=p):
        seed_everything(0, threads=1)
        res = get_family('generative').train(params, tr, va, d, on_step=hook)
        return load_generative(d)[0], res
    m1, r1 = run(tmp_path/'a')
    assert list(r1['tasks']) == ['phase0_vision', 'phase0_language', 'phase2_full'] and r1['resumed_from'] is None
    kill = kill_at(8)
    with pytest.raises(Interrupt): run(tmp_path/'b', lambda s, r: kill(s, r) if r['task'] == 'phase0_language' else None)
    assert not (tmp_path/'b'/'model.safetensors').exists() and not (tmp_path/'b'/'phase2_full').exists()
    m2, r2 = run(tmp_path/'b')
    t2 = r2['tasks']
    assert t2['phase0_vision']['resumed_from'] == 8 and t2['phase0_vision']['train_steps_per_s'] is None   # finished: not rerun
    assert t2['phase0_language']['resumed_from'] == 5 and t2['phase2_full']['resumed_from'] is None
    assert 'phase1_projector' not in t2
    _same_state(m1, m2, atol=0)
    log = [json.loads(l) for l in (tmp_path/'b'/'phase0_language'/'train_log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log] == [5, 10, 12]
    # killed inside SimCLR (phase0_vision): resumed there, the rest trained afresh, the same model again
    kill7 = kill_at(7)
    with pytest.raises(Interrupt): run(tmp_path/'c', lambda s, r: kill7(s, r) if r['task'] == 'phase0_vision' else None)
    assert not (tmp_path/'c'/'vision').exists() and not (tmp_path/'c'/'phase0_language').exists()
    m4, r4 = run(tmp_path/'c')
    assert r4['tasks']['phase0_vision']['resumed_from'] == 5 and r4['tasks']['phase0_language']['resumed_from'] is None
    _same_state(m1, m4, atol=0)
    # finished phases are skipped on a rerun; another configuration is refused, naming the field
    m3, r3 = run(tmp_path/'b')
    assert all(r['resumed_from'] == r['steps'] and r['train_steps_per_s'] is None for r in r3['tasks'].values()), r3['tasks']
    _same_state(m2, m3, atol=0)
    with pytest.raises(ValueError, match=r'phase2_full.*train\.lr'): run(tmp_path/'b', params=replace(p, full=replace(p.full, lr=1e-3)))
    with pytest.raises(ValueError, match=r'phase0_vision.*task\.ssl'):
        run(tmp_path/'b', params=replace(p, ssl=replace(SSL, temperature=0.5)))


def test_dino_checkpoint_loader(tmp_path):
    p = write_dino_fixture(tmp_path/'dino.pth', 'resnet18')
    sd = torch.load(p, weights_only=True)['teacher']
    assert all(k.startswith('module.backbone.') or k.startswith('module.head.') for k in sd)
    v = dino_vision(p, 'resnet18', image_size=64, grid=2)
    assert (v.n_tokens, v.feature_dim) == (4, 512)
    assert torch.equal(v.backbone.layer2[0].conv1.weight, sd['module.backbone.layer2.0.conv1.weight'])
    assert not any(q.requires_grad for q in v.parameters()) and not v.train().training
    x = torch.randint(0, 255, (2, 3, 48, 48), dtype=torch.uint8)
    assert v(x).shape == (2, 4, 512)
    bad = {k: t for k, t in sd.items() if k != 'module.backbone.fc.weight' and 'layer3.0.downsample.0' not in k}
    bad['module.backbone.classifier.weight'] = torch.zeros(2)
    torch.save({'teacher': bad}, tmp_path/'bad.pth')
    with pytest.raises(RealDataError) as e: dino_vision(tmp_path/'bad.pth', 'resnet18')
    msg = str(e.value)
    assert 'bad.pth' in msg and "layer3.0.downsample.0.weight" in msg and "classifier.weight" in msg and 'unexpected' in msg
    torch.save({'student': sd}, tmp_path/'s.pth')
    with pytest.raises(RealDataError, match=r"s.pth: no 'teacher' state dict; top-level keys: \['student'\]"):
        dino_vision(tmp_path/'s.pth', 'resnet18')
    with pytest.raises(RealDataError, match=r'missing key\(s\)'): dino_vision(p, 'resnet34')
    with pytest.raises(RealDataError, match='file not found'): dino_vision(tmp_path/'none.pth')
    (tmp_path/'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(RealDataError, match='weights_only'): dino_vision(tmp_path/'junk.pth')
    assert torch.equal(load_dino_resnext50(p, 'resnet18').layer1[0].conv1.weight, sd['module.backbone.layer1.0.conv1.weight'])


def test_dino_unknown_architecture_is_named(tmp_path):
    "A typo in `generative.dino_arch` is a ValueError naming it (as `backbone_from_spec` says), not an AttributeError."
    p = write_dino_fixture(tmp_path/'dino.pth', 'resnet18')
    with pytest.raises(ValueError, match='unknown torchvision architecture'): dino_vision(p, 'resnet_9000')


def test_dino_vision_through_the_family(data, tmp_path, monkeypatch):
    "vision: a DINO file ($VARS expanded): no SimCLR task; the encoder is rebuilt from the saved spec without the file."
    tr, va, tok = data
    p = write_dino_fixture(tmp_path/'ck'/'d.pth', 'resnet18')
    monkeypatch.setenv('BABYVLM_TEST_DINO', str(tmp_path/'ck'))
    gp = replace(_params(language=4, projector=4, full=4, every=4), vision='$BABYVLM_TEST_DINO/d.pth', dino_arch='resnet18',
                 dino_image_size=32, dino_grid=1)
    res = get_family('generative').train(gp, tr, va, tmp_path/'run')
    assert list(res['tasks']) == ['phase0_language', 'phase1_projector', 'phase2_full']
    assert not (tmp_path/'run'/'vision').exists() and not (tmp_path/'run'/'phase0_vision').exists()
    ims = _images(va, 6)
    md = get_family('generative').load(tmp_path/'run')
    assert md.model.vision.spec['source'] == str(p) and md.model.n_image_tokens == 1
    ref = GenerativeScorer(md.model, md.tokenizer).score(ims, TEXTS[:6])
    torch.testing.assert_close(md.model.vision.backbone.layer1[0].conv1.weight,
                               torch.load(p, weights_only=True)['teacher']['module.backbone.layer1.0.conv1.weight'])
    p.unlink()
    md2 = get_family('generative').load(tmp_path/'run')
    np.testing.assert_allclose(GenerativeScorer(md2.model, md2.tokenizer).score(ims, TEXTS[:6]), ref, atol=1e-6)
    monkeypatch.delenv('BABYVLM_TEST_DINO')
    with pytest.raises(ValueError, match=r"generative.vision: '\$BABYVLM_TEST_DINO/d.pth' names an unset environment variable"):
        get_family('generative').train(gp, tr, va, tmp_path/'run2')
    with pytest.raises(RealDataError, match='file not found'):
        get_family('generative').train(replace(gp, vision=str(tmp_path/'none.pth')), tr, va, tmp_path/'run3')


def test_save_load_round_trip(data, model, tmp_path):
    m, _, loaded = model
    tok = data[2]
    ims = _images(data[1], 6)
    save_generative(m, tok, tmp_path/'g')
    assert sorted(p.name for p in (tmp_path/'g').iterdir()) == ['model.safetensors', 'model_config.json', 'tokenizer.json']
    m2, tok2 = load_generative(tmp_path/'g')
    np.testing.assert_allclose(GenerativeScorer(m2, tok2).score(ims, TEXTS[:6]), GenerativeScorer(m, tok).score(ims, TEXTS[:6]), atol=1e-6)
    assert m2.lm.lm_head.weight.data_ptr() == m2.lm.transformer.wte.weight.data_ptr()
    assert tok2.ids(TEXTS[3]) == loaded.tokenizer.ids(TEXTS[3]) == tok.ids(TEXTS[3])  # the family builds the same tokenizer
    # a DINO-layout encoder is rebuilt from the saved spec, without the original file
    p = write_dino_fixture(tmp_path/'d.pth', 'resnet18')
    seed_everything(1, threads=1)
    md = create_generative(TINY, dino_vision(p, 'resnet18', image_size=32, grid=1), tok)
    save_generative(md, tok, tmp_path/'gd'); p.unlink()
    md2, _ = load_generative(tmp_path/'gd')
    np.testing.assert_allclose(GenerativeScorer(md2, tok).score(ims, TEXTS[:6]), GenerativeScorer(md, tok).score(ims, TEXTS[:6]), atol=1e-6)
    save_vision(m.vision, tmp_path/'v')
    x = pair_tensors(data[1], tok, 32).images[:4]
    torch.testing.assert_close(load_vision(tmp_path/'v')(x), m.vision(x))
    cfgf = tmp_path/'g'/'model_config.json'
    cfgf.write_text(cfgf.read_text().replace('"babyllava"', '"cvcl"'))
    with pytest.raises(ValueError, match="family must be 'babyllava'"): load_generative(tmp_path/'g')
    (tmp_path/'g'/'tokenizer.json').unlink()
    with pytest.raises(FileNotFoundError, match='missing tokenizer.json'): load_generative(tmp_path/'g')


def test_config_errors(data, tmp_path):
    tr, va, tok = data
    v = vision_from_spec(CNN)
    with pytest.raises(ValueError, match='n_positions=10 is too small: 4 image tokens'): create_generative(GenerativeConfig(n_positions=10), v, tok)
    with pytest.raises(ValueError, match='not divisible by n_head'): create_generative(GenerativeConfig(n_embd=30, n_head=4), v, tok)
    with pytest.raises(ValueError, match="spec lacks field 'mean'"): VisionTower(torch.nn.Identity(), dict(kind='cnn', image_size=8, std=[1] * 3))
    with pytest.raises(ValueError, match="'kind' must be"): vision_from_spec(dict(CNN, kind='rnn'))
    with pytest.raises(ValueError, match="kind 'vit' lacks field 'patch'"): vision_from_spec(dict(CNN, kind='vit'))
    gen = get_family('generative')
    with pytest.raises(ValueError, match=r"generative: the training dataset lacks column\(s\) \['text'\]"):
        gen.train(_params(), tr.remove_columns('text'), va, tmp_path/'never')
    with pytest.raises(ValueError, match=r"generative: the validation dataset is empty"):
        gen.train(_params(), tr, va.select([]), tmp_path/'never')
    with pytest.raises(ValueError, match='every phase has max_steps 0'):
        gen.train(_params(language=0, projector=0, full=0, vision=str(write_dino_fixture(tmp_path/'d.pth')), dino_arch='resnet18',
                          dino_image_size=32, dino_grid=1), tr, va, tmp_path/'never2')
    with pytest.raises(ParamsError, match='feature_dtype must be one of'): check_generative(replace(_params(), feature_dtype='int8'), {})
    with pytest.raises(ParamsError, match="generative.ssl_train is not used when generative.vision is '/x/dino.pth'"):
        check_generative(replace(_params(), vision='/x/dino.pth'), {'ssl_train': {'max_steps': 5}})
    with pytest.raises(ParamsError, match="generative.dino_grid is not used when generative.vision is 'ssl'"):
        check_generative(_params(), {'dino_grid': 3})
    assert not (tmp_path/'never'/'model.safetensors').exists()


def test_coca_train_score_generate_save(data, tmp_path):
    tr, va, tok = data
    cfg = TrainConfig(max_steps=16, batch_size=16, lr=2e-3, warmup_steps=2, eval_every=8, ckpt_every=100, val_batch_size=16,
                      tensorboard=False, progress=False)
    fam = get_family('hybrid')
    s = fam.train(HybridParams(CoCaConfig(image_size=32), cfg), tr, va, tmp_path/'c')
    r = s['tasks']['coca']
    assert r['final_train_loss'] < r['first_train_loss'] and np.isfinite(r['final_val_loss']) and r['selected'] == 'best'
    assert s['best_step'] in (8, 16) and s['steps'] == 16
    loaded = fam.load(tmp_path/'c')
    c = loaded.model
    assert detect_family(tmp_path/'c').name == 'hybrid' and c.config == CoCaConfig(image_size=32)
    # the run folder holds the selected (best) weights of the task
    seed_everything(0, threads=1)
    best = create_coca(CoCaConfig(image_size=32), tok); load_model(best, str(tmp_path/'c'/'coca'/'best.safetensors'))
    _same_state(best, c, atol=0)
    ims = _images(va)
    lik = CoCaScorer(c, tok, batch_size=64).score(ims, TEXTS)
    np.testing.assert_allclose(CoCaScorer(c, tok, batch_size=1).score(ims, TEXTS), lik, atol=1e-5, rtol=0)
    cos = fam.scorer(loaded, 64).score(ims, TEXTS)
    np.testing.assert_allclose(fam.scorer(loaded, 5).score(ims, TEXTS), cos, atol=1e-5, rtol=0)
    assert np.all(np.abs(cos) <= 1 + 1e-6)   # the family scores choice benchmarks with the embeddings' cosine
    g = CoCaScorer(c, tok, batch_size=8).generate(ims[:6])
    assert g == CoCaScorer(c, tok, batch_size=1).generate(ims[:6]) == fam.captioner(loaded, 3, [])(ims[:6])
    blind = fam.blind(loaded, 4, [])
    np.testing.assert_allclose(blind.score(ims, TEXTS), blind.score(ims[::-1], TEXTS), atol=1e-6, rtol=0)
    c2, tok2 = load_coca(tmp_path/'c')
    np.testing.assert_allclose(CoCaScorer(c2, tok2).score(ims, TEXTS), lik, atol=1e-6)
    assert c2.config == c.config
    # a rerun finds the finished task and trains nothing; another loss weight is refused
    s2 = fam.train(HybridParams(CoCaConfig(image_size=32), cfg), tr, va, tmp_path/'c')
    assert s2['tasks']['coca']['resumed_from'] == 16 and s2['best_val_loss'] == s['best_val_loss']
    with pytest.raises(ValueError, match=r'task\.coca'):
        fam.train(HybridParams(CoCaConfig(image_size=32, caption_loss_weight=1.0), cfg), tr, va, tmp_path/'c')
    with pytest.raises(ValueError, match='unknown CoCa arch'): create_coca(CoCaConfig(arch='coca_huge'), tok)
