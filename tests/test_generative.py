"Generative models: tokenizer, vision encoders (DINO layout), loss masking, batch-size invariance of scores and captions, phases, resume, I/O, CoCa."
import json
from pathlib import Path
import numpy as np, pytest, torch
from babyvlm.core import seed_everything
from babyvlm.text import tokenize, PAD, UNK, SOS, EOS
from babyvlm.train import TrainConfig, pair_tensors
from babyvlm.testing import toy_pairs, kill_at, Interrupt
from babyvlm.models.generative import (
    WordTokenizer, build_tokenizer, VisionTower, vision_from_spec, load_dino_backbone, dino_vision, write_dino_fixture,
    GenerativeConfig, create_generative, build_labels, lm_loss, GenerativeTrainConfig, train_generative,
    save_generative, load_generative, GenerativeScorer, save_vision, load_vision, CoCaConfig, create_coca, train_coca,
    save_coca, load_coca, CoCaScorer, coca_cosine_scorer)

TINY = GenerativeConfig(n_embd=32, n_layer=1, n_head=2, n_inner=64, dropout=0.0)
CNN = dict(kind='cnn', widths=[8, 16], image_size=32, grid=2, mean=[0.5] * 3, std=[0.25] * 3)
# texts of different lengths (padding matters), an empty one, unknown words
TEXTS = ['look at the red ball', 'a door', '', 'can you see the blue window ?', 'zzz qqq ball', 'the table is green'] * 2


@pytest.fixture(scope='module')
def data():
    tr, va = toy_pairs(64, seed=0), toy_pairs(16, seed=1)
    return tr, va, build_tokenizer(tr['text'])


@pytest.fixture(scope='module')
def model(data):
    "A briefly trained BabyLLaVA (so that scores and captions are not uniform)."
    tr, va, tok = data
    seed_everything(0, threads=1)
    m = create_generative(TINY, vision_from_spec(CNN), tok)
    pc = dict(batch_size=16, warmup_steps=2, eval_every=10, ckpt_every=100, tensorboard=False, progress=False)
    cfg = GenerativeTrainConfig(language=TrainConfig(max_steps=20, lr=5e-3, **pc), projector=TrainConfig(max_steps=20, lr=5e-3, **pc),
                                full=TrainConfig(max_steps=20, lr=2e-3, **pc))
    import tempfile
    res = train_generative(m, tok, tr, va, cfg, tempfile.mkdtemp())
    return m, res


def _images(va, n=12): return [va[i % len(va)]['image'] for i in range(n)]


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
    m, _ = model
    ims = _images(data[1])
    ref = GenerativeScorer(m, data[2], batch_size=64).score(ims, TEXTS)
    for bs in (1, 5):
        np.testing.assert_allclose(GenerativeScorer(m, data[2], batch_size=bs).score(ims, TEXTS), ref, atol=1e-5, rtol=0)
    assert ref.shape == (12,) and np.all(np.isfinite(ref)) and np.all(ref < 0) and ref.std() > 0.1
    # a known text at the right image scores higher than garbage
    assert ref[0] > ref[4]


def test_blind_scorer_ignores_the_image(data, model):
    m, _ = model
    ims = _images(data[1])
    b = GenerativeScorer(m, data[2], blind=True)
    np.testing.assert_allclose(b.score(ims, TEXTS), b.score(ims[::-1], TEXTS), atol=0, rtol=0)
    s = GenerativeScorer(m, data[2])
    assert not np.allclose(s.score(ims, TEXTS), s.score(ims[::-1], TEXTS))  # the sighted one does not
    with pytest.raises(ValueError, match='12 images but 2 texts'): s.score(ims, TEXTS[:2])


def test_generation_deterministic_and_batch_invariant(data, model):
    m, _ = model
    ims = _images(data[1], 8)
    g = GenerativeScorer(m, data[2], batch_size=8).generate(ims)
    assert g == GenerativeScorer(m, data[2], batch_size=1).generate(ims) == GenerativeScorer(m, data[2], batch_size=3).generate(ims)
    assert len(g) == 8 and all(isinstance(c, str) and '<eos>' not in c and '<sos>' not in c for c in g)
    assert all(len(c.split()) <= 4 for c in GenerativeScorer(m, data[2]).generate(ims, max_new_tokens=4))
    with pytest.raises(ValueError, match='max_new_tokens=40'): GenerativeScorer(m, data[2]).generate(ims, 40)


def test_training_lowers_each_phase_loss(model):
    _, res = model
    assert list(res) == ['phase0_language', 'phase1_projector', 'phase2_full']
    for r in res.values(): assert r.final_train_loss < r.first_train_loss, r


def test_phase_resume_after_kill_is_exact(data, tmp_path):
    tr, va, tok = data
    pc = dict(batch_size=16, warmup_steps=2, eval_every=5, ckpt_every=5, tensorboard=False, progress=False)
    cfg = GenerativeTrainConfig(language=TrainConfig(max_steps=12, lr=3e-3, **pc), projector=TrainConfig(max_steps=0, **pc),
                                full=TrainConfig(max_steps=6, lr=2e-3, **pc))
    def run(d, hook=None):
        seed_everything(0, threads=1)
        m = create_generative(TINY, vision_from_spec(CNN), tok)
        return m, train_generative(m, tok, tr, va, cfg, d, on_step=hook)
    m1, r1 = run(tmp_path/'a')
    kill = kill_at(8)
    with pytest.raises(Interrupt): run(tmp_path/'b', lambda phase, s, r: kill(s, r) if phase == 'phase0_language' else None)
    m2, r2 = run(tmp_path/'b')
    assert r2['phase0_language'].resumed_from == 5 and 'phase1_projector' not in r2
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()): torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=k)
    log = [json.loads(l) for l in (tmp_path/'b'/'phase0_language'/'train_log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log] == [5, 10, 12]
    # finished phases are skipped on a rerun; another configuration is refused, naming the field
    m3, r3 = run(tmp_path/'b')
    assert all(r.skipped for r in r3.values())
    for (k, a), b in zip(m1.state_dict().items(), m3.state_dict().values()): torch.testing.assert_close(a, b, atol=0, rtol=0, msg=k)
    cfg.full.lr = 1e-3
    with pytest.raises(ValueError, match=r'train\.lr'): run(tmp_path/'b')


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
    with pytest.raises(ValueError) as e: load_dino_backbone(tmp_path/'bad.pth', 'resnet18')
    msg = str(e.value)
    assert 'bad.pth' in msg and "layer3.0.downsample.0.weight" in msg and "classifier.weight" in msg and 'unexpected' in msg
    with pytest.raises(ValueError, match="expected a dict with a 'teacher'"): (torch.save({'student': sd}, tmp_path/'s.pth'), load_dino_backbone(tmp_path/'s.pth', 'resnet18'))
    with pytest.raises(ValueError, match='missing key'): load_dino_backbone(p, 'resnet34')
    with pytest.raises(ValueError, match='unknown torchvision architecture'): load_dino_backbone(p, 'resnet_9000')
    with pytest.raises(FileNotFoundError, match='not found'): load_dino_backbone(tmp_path/'none.pth')
    (tmp_path/'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='weights_only'): load_dino_backbone(tmp_path/'junk.pth')


def test_save_load_round_trip(data, model, tmp_path):
    m, _ = model
    tok = data[2]
    ims = _images(data[1], 6)
    save_generative(m, tok, tmp_path/'g')
    assert sorted(p.name for p in (tmp_path/'g').iterdir()) == ['model.safetensors', 'model_config.json', 'tokenizer.json']
    m2, tok2 = load_generative(tmp_path/'g')
    np.testing.assert_allclose(GenerativeScorer(m2, tok2).score(ims, TEXTS[:6]), GenerativeScorer(m, tok).score(ims, TEXTS[:6]), atol=1e-6)
    assert m2.lm.lm_head.weight.data_ptr() == m2.lm.transformer.wte.weight.data_ptr()
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


def test_config_errors(data):
    tok = data[2]
    v = vision_from_spec(CNN)
    with pytest.raises(ValueError, match='n_positions=10 is too small: 4 image tokens'): create_generative(GenerativeConfig(n_positions=10), v, tok)
    with pytest.raises(ValueError, match='not divisible by n_head'): create_generative(GenerativeConfig(n_embd=30, n_head=4), v, tok)
    with pytest.raises(ValueError, match="spec lacks field 'mean'"): VisionTower(torch.nn.Identity(), dict(kind='cnn', image_size=8, std=[1] * 3))
    with pytest.raises(ValueError, match="'kind' must be"): vision_from_spec(dict(CNN, kind='vit'))
    with pytest.raises(ValueError, match="lacks column"): train_generative(create_generative(TINY, v, tok), tok, data[0].remove_columns('text'), data[1], GenerativeTrainConfig(), '/tmp/never')


def test_coca_train_score_generate_save(data, tmp_path):
    tr, va, tok = data
    seed_everything(0, threads=1)
    c = create_coca(CoCaConfig(image_size=32), tok)
    cfg = TrainConfig(max_steps=16, batch_size=16, lr=2e-3, warmup_steps=2, eval_every=8, ckpt_every=100, val_batch_size=16,
                      tensorboard=False, progress=False)
    r = train_coca(c, tok, tr, va, cfg, tmp_path/'c')
    assert r.final_train_loss < r.first_train_loss and np.isfinite(r.final_val_loss)
    ims = _images(va)
    lik = CoCaScorer(c, tok, batch_size=64).score(ims, TEXTS)
    np.testing.assert_allclose(CoCaScorer(c, tok, batch_size=1).score(ims, TEXTS), lik, atol=1e-5, rtol=0)
    cos = coca_cosine_scorer(c, tok).score(ims, TEXTS)
    np.testing.assert_allclose(coca_cosine_scorer(c, tok, batch_size=5).score(ims, TEXTS), cos, atol=1e-5, rtol=0)
    g = CoCaScorer(c, tok, batch_size=8).generate(ims[:6])
    assert g == CoCaScorer(c, tok, batch_size=1).generate(ims[:6])
    c2, tok2 = load_coca(tmp_path/'c')
    np.testing.assert_allclose(CoCaScorer(c2, tok2).score(ims, TEXTS), lik, atol=1e-6)
    assert c2.config == c.config
    with pytest.raises(ValueError, match='unknown CoCa arch'): create_coca(CoCaConfig(arch='coca_huge'), tok)
