"Checks on the notebooks themselves: the papermill contract and the nbdev source of truth."
import json, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEMPLATES = sorted((ROOT/'nbs'/'runs').glob('*.ipynb'))


def _tagged(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    return [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]


def test_templates_exist():
    assert {p.name for p in TEMPLATES} >= {'train_evaluate.ipynb', 'report.ipynb'}


@pytest.mark.parametrize('template', TEMPLATES, ids=lambda p: p.name)
def test_parameters_tag_survives_nbdev_clean(template, tmp_path):
    "nbdev_clean strips cell metadata unless settings.ini allows `tags`; without the tag papermill runs the defaults."
    assert len(_tagged(template)) == 1, f"{template} must have exactly one cell tagged 'parameters'"
    proj = tmp_path/'proj'; (proj/'nbs').mkdir(parents=True)
    shutil.copy(ROOT/'settings.ini', proj/'settings.ini')
    nb = proj/'nbs'/template.name
    shutil.copy(template, nb)
    r = subprocess.run([str(BIN/'nbdev_clean'), '--fname', str(nb)], cwd=proj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(_tagged(nb)) == 1, 'nbdev_clean removed the parameters tag'


def test_nbdev_clean_would_strip_tags_without_the_setting(tmp_path):
    "The guard above is not vacuous: with the setting removed, nbdev_clean does strip the tag."
    proj = tmp_path/'proj'; (proj/'nbs').mkdir(parents=True)
    ini = (ROOT/'settings.ini').read_text().replace('allowed_cell_metadata_keys = tags', 'allowed_cell_metadata_keys = ')
    (proj/'settings.ini').write_text(ini)
    nb = proj/'nbs'/'t.ipynb'; shutil.copy(TEMPLATES[0], nb)
    subprocess.run([str(BIN/'nbdev_clean'), '--fname', str(nb)], cwd=proj, check=True, capture_output=True)
    assert _tagged(nb) == []


def test_library_matches_notebooks(tmp_path):
    "Exporting the notebooks reproduces the committed library byte for byte."
    dst = tmp_path/'proj'
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns('.venv', '.venv-*', '.cache', 'outputs', '.git', '__pycache__'))
    before = {p.relative_to(dst): p.read_bytes() for p in (dst/'babyvlm').rglob('*.py')}
    subprocess.run([str(BIN/'nbdev_export')], cwd=dst, check=True, capture_output=True)
    after = {p.relative_to(dst): p.read_bytes() for p in (dst/'babyvlm').rglob('*.py')}
    changed = sorted(str(k) for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], f'edit the notebooks, not the .py files; out of sync: {changed}'


def test_papermill_reads_the_template_parameters():
    "papermill must parse every parameter (an unparsable line would make it inject blindly and warn)."
    import papermill as pm
    assert set(pm.inspect_notebook(str(ROOT/'nbs'/'runs'/'train_evaluate.ipynb'))) == {'params_file', 'out_dir', 'profile', 'condition', 'seed'}
    assert set(pm.inspect_notebook(str(ROOT/'nbs'/'runs'/'report.ipynb'))) == {'study_dir'}


@pytest.mark.parametrize('template', TEMPLATES, ids=lambda p: p.name)
def test_nbdev_test_skips_templates(template):
    "Templates run under papermill (tested in test_study), not under nbdev_test, which would train with defaults."
    from fastcore.basics import str2bool
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    nb = NBProcessor(template, procs=FrontmatterProc, process=True).nb
    assert str2bool(getattr(nb, 'frontmatter_', {}).get('skip_exec', False)), f'{template} needs a raw front-matter cell with skip_exec: true'
