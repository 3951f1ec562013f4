"""The shape of the house: modules in pipeline order with no circles and no imports from a later stage, the family
registry as the only place that knows the families, and every parameter key used or refused."""
import ast, re
from pathlib import Path
import pytest
from babyvlm.core import ParamsError
from babyvlm.study import load_params

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT/'babyvlm'
# the pipeline, in order: a module may import only from modules before it
ORDER = ['core', 'assets', 'compose', 'world', 'benchmarks', 'items', 'realdata', 'pretrained', 'text', 'transfer', 'matching',
         'models.contrastive', 'models.vision', 'models.generative', 'models.hybrid', 'models.reference',
         'train', 'evaluate', 'families', 'released', 'audit', 'claims', 'lmms', 'study', 'cli']


def _module(path: Path) -> str:
    return '.'.join(path.relative_to(LIB).with_suffix('').parts)


def _imports(path: Path) -> set[str]:
    "Every babyvlm module `path` imports, at the top or inside functions, absolute or relative."
    mod = _module(path); pkg = mod.split('.')[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:   # relative: from .x / ..x
                base = pkg[:len(pkg) - node.level + 1] if node.level > 1 else pkg
                name = '.'.join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith('babyvlm'): name = node.module[len('babyvlm.'):] if node.module != 'babyvlm' else ''
            else: continue
            if name == '':   # from babyvlm import x
                out |= {a.name for a in node.names}
            else: out.add(name)
        elif isinstance(node, ast.Import):
            out |= {a.name[len('babyvlm.'):] for a in node.names if a.name.startswith('babyvlm.')}
    return {m for m in out if m}


def _graph():
    files = [p for p in LIB.rglob('*.py') if p.name not in ('__init__.py', '_modidx.py')]
    return {_module(p): _imports(p) for p in files}


def test_every_module_has_a_place_in_the_pipeline():
    assert set(_graph()) == set(ORDER) | {'testing'}, 'add the new module to ORDER (and to the README architecture)'


def test_no_import_from_a_later_stage_and_no_circle():
    g = _graph()
    g = {m: deps - {m} for m, deps in g.items()}   # (a module may read its own source, e.g. to fingerprint it)
    bad = [f"{m} imports {d}" for m, deps in g.items() if m != 'testing' for d in deps
           if d == 'testing' or (d in ORDER and ORDER.index(d) >= ORDER.index(m))]
    assert bad == [], bad
    # (an order with every edge pointing backwards has no circle; check it directly as well)
    seen, stack = set(), []
    def visit(m):
        if m in stack: raise AssertionError(f"import circle: {' -> '.join(stack[stack.index(m):] + [m])}")
        if m in seen: return
        stack.append(m); [visit(d) for d in g.get(m, ()) if d in g]; stack.pop(); seen.add(m)
    for m in g: visit(m)


def test_the_graph_check_can_fail(tmp_path):
    "The checks are not vacuous: a reach back up and a circle are found."
    order = {'a': {'b'}, 'b': {'a'}}
    with pytest.raises(AssertionError, match='import circle'):
        seen, stack = set(), []
        def visit(m):
            if m in stack: raise AssertionError(f"import circle: {m}")
            if m in seen: return
            stack.append(m); [visit(d) for d in order[m]]; stack.pop(); seen.add(m)
        visit('a')
    f = tmp_path/'x.py'; f.write_text('def f():\n    from babyvlm.study import load_params\n    import babyvlm.cli\n')
    assert {'study', 'cli'} <= {m for node in ast.walk(ast.parse(f.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))
                                for m in ([node.module[len('babyvlm.'):]] if isinstance(node, ast.ImportFrom) else
                                          [a.name[len('babyvlm.'):] for a in node.names])}


FAMILY_NAMES = ('contrastive', 'generative', 'generative_llama', 'hybrid', 'reference')


def test_only_the_registry_branches_on_family_names():
    "Outside the registry, no code compares a family's name (`== 'generative'`, `in ('hybrid', ...)`)."
    pat = re.compile(r"(==|!=|\bin\b)\s*[\(\[]?\s*['\"](?:%s)['\"]" % '|'.join(FAMILY_NAMES))
    hits = []
    for p in [*LIB.rglob('*.py'), *(ROOT/'nbs'/'runs').glob('*.ipynb')]:
        if p.name in ('families.py', '_modidx.py', 'testing.py'): continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if pat.search(line): hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()[:120]}")
    allowed = [h for h in hits if "family in ('contrastive', 'reference')" in h]   # run folder naming, documented in study
    assert [h for h in hits if h not in allowed] == []


# every training section of every family, and a key it does not use: each must be an error that names the key
UNUSED = [
    ('contrastive.train.crop_scale=[0.5, 1]', "unknown key 'contrastive.train.crop_scale'"),      # augmentation lives in .images
    ('contrastive.images.lr=0.1', "unknown key 'contrastive.images.lr'"),
    ('generative.ssl_train.flip_p=0.1', "unknown key 'generative.ssl_train.flip_p'"),
    ('generative.ssl_images.max_steps=3', "unknown key 'generative.ssl_images.max_steps'"),
    ('generative.language.blur_p=0.1', "unknown key 'generative.language.blur_p'"),             # phase 0 has no images
    ('generative.projector.preload_max_gb=1', "unknown key 'generative.projector.preload_max_gb'"),   # features are cached
    ('generative.full.crop_scale=[0.5, 1]', "unknown key 'generative.full.crop_scale'"),
    ('hybrid.train.flip_p=0.0', "unknown key 'hybrid.train.flip_p'"),
    ('hybrid.images.patience=2', "unknown key 'hybrid.images.patience'"),
    ('reference.train.crop_scale=[0.5, 1]', "unknown key 'reference.train.crop_scale'"),        # frozen features: no augmentation
    ('reference.images.flip_p=0.5', "unknown key 'reference.images'"),
]


@pytest.mark.parametrize('override,message', UNUSED, ids=[o.split('=')[0] for o, _ in UNUSED])
def test_a_key_a_trainer_does_not_use_is_an_error_naming_it(override, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params('quick', 'home', 0, [override])


def test_sections_a_family_configuration_ignores_are_refused():
    "BabyLLaVA with DINO weights trains no SimCLR encoder: its SimCLR sections, if given, are refused by name."
    with pytest.raises(ParamsError, match=r"generative\.ssl is not used when generative\.vision is '/data/dino\.pth'"):
        load_params('quick', 'home', 0, ['family=generative', 'generative.vision=/data/dino.pth'])   # quick sets ssl and ssl_train
    p = load_params('paper', 'saycam', 0, ['family=generative'])   # the paper profile gives DINO and no SimCLR section
    assert p.generative.vision == '${SAYCAM_DINO_CKPT}'
    with pytest.raises(ParamsError, match=r"generative\.dino_grid is not used when generative\.vision is 'world'"):
        load_params('quick', 'home', 0, ['family=generative', 'generative.dino_grid=4'])
    with pytest.raises(ParamsError, match=r"generative\.feature_dtype must be one of"):
        load_params('quick', 'home', 0, ['family=generative', 'generative.feature_dtype=int8'])


def test_every_train_config_key_reaches_the_engine():
    "Each TrainConfig field is read by `babyvlm.train` (the engine, `fit` and `lr_at`), each ImageConfig field by its image sources."
    from dataclasses import fields
    from babyvlm.train import TrainConfig, ImageConfig
    src = (LIB/'train.py').read_text()
    assert [f.name for f in fields(TrainConfig) if f"cfg.{f.name}" not in src] == []
    assert [f.name for f in fields(ImageConfig) if f".{f.name}" not in src.replace('class ImageConfig', '')[src.index('def make_augment'):]
            and f"limit = (images or ImageConfig()).{f.name}" not in src] == []
