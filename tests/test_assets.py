"Asset packs: pinning, checksums, clear errors, the index."
import json, os, collections
from dataclasses import replace
from pathlib import Path
import pytest
from babyvlm import assets
from babyvlm.assets import (PACKS, AssetError, fetch_assets, fetch_pack, verify, asset_index, assets_dir,
                            LABELED_S_CATEGORIES)

@pytest.fixture(scope='module')
def manifest(): return fetch_assets(progress=False)

def test_manifest_records_licences(manifest):
    m = json.loads((assets_dir()/'manifest.json').read_text())
    assert m == manifest
    for e in m['packs']:
        assert e['sha256'] == PACKS[e['name']].sha256 and e['version'] == PACKS[e['name']].version
        assert e['licence'] and e['attribution'] and e['n_files'] >= 1
        assert (assets_dir()/e['name']/e['licence_file']).exists()

def test_rerun_is_noop(manifest):
    marker = assets_dir()/'pysiogame'/'.complete'; before = marker.stat().st_mtime_ns
    assert fetch_assets(progress=False) == manifest
    assert marker.stat().st_mtime_ns == before

def test_checksum_mismatch(tmp_path):
    f = tmp_path/'pkg.deb'; f.write_bytes(b'tampered')
    with pytest.raises(AssetError, match='checksum mismatch.*pysiogame'): verify(f, PACKS['pysiogame'])

def test_unknown_pack():
    with pytest.raises(AssetError, match='unknown asset pack'): fetch_assets(['nope'])

def test_missing_tool_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(AssetError, match="'npm' is not on PATH.*install npm"):
        fetch_pack(PACKS['fluent-emoji-3d'], cache=tmp_path, progress=False)
    with pytest.raises(AssetError, match="'apt-get' is not on PATH"):
        fetch_pack(PACKS['qabcs-data'], cache=tmp_path, progress=False)

@pytest.mark.skipif(not __import__('shutil').which('apt-get'), reason='needs apt-get')
def test_unfetchable_deb_says_apt_get_update(tmp_path):
    bad = replace(PACKS['qabcs-data'], version='0.0.0-not-a-version')
    with pytest.raises(AssetError, match=r"qabcs-data.*could not be fetched(.|\n)*apt-get update"):
        fetch_pack(bad, cache=tmp_path, progress=False)
    assert not (tmp_path/'assets'/'qabcs-data'/'.complete').exists()

def test_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(AssetError, match="'sweethome3d' is not in the cache.*fetch_assets"):
        asset_index(cache=tmp_path)

def test_index_covers_all_categories(manifest):
    idx = asset_index()
    groups = collections.defaultdict(set)
    for r in idx:
        if r['category']: groups[r['category']].add(r['group'])
        assert r['category'] in LABELED_S_CATEGORIES + ['']
    assert all(len(groups[c]) >= 5 for c in LABELED_S_CATEGORIES), {c: len(groups[c]) for c in LABELED_S_CATEGORIES}
    assert len({r['web_category'] for r in idx if r['web_category']}) >= 60
    # skin-tone variants of one emoji share a group
    g = {r['asset_id']: r['group'] for r in idx}
    assert g['fluent-emoji-3d/1f44d'] == g['fluent-emoji-3d/1f44d-1f3fd']
