"benchmarks/gpu_check.py (issue 6): its CPU smoke mode trains every paper-profile model a few steps and prints the table."
import json
import pytest
from conftest import benchmark
pytestmark = pytest.mark.serial   # every paper-profile model at once: after the parallel tests, alone (conftest.py)


def test_cpu_smoke(tmp_path, capsys):
    gc = benchmark('gpu_check')
    rows = gc.main(['--device', 'cpu', '--steps', '2', '--batch', '2', '--json', str(tmp_path/'r.json')])
    out = capsys.readouterr().out
    assert '== gpu_check results' in out and 'samples/s' in out and 'MFU' in out and 'peak GiB' in out
    assert [r['model'] for r in rows] == ['cvcl_resnext50', 'babyllava_p2_vision', 'babyllava_p2_cached']
    for r in rows:
        assert r['model'] in out and r['batch'] == 2 and r['finite']
        assert r['samples_per_s'] > 0 and r['gflop_per_step'] > 0 and r['mfu'] is None and r['peak_mem_gib'] is None
    v, c = rows[1]['gflop_per_step'], rows[2]['gflop_per_step']
    assert v > c > 0  # the frozen vision forward is counted only when it runs
    # ResNeXt-50 at 224 px: about 8.5 GFLOP forward per image, x3 for forward + backward (grouped convs counted right)
    assert 40 < rows[0]['gflop_per_step'] < 60
    assert 15 < v - c < 19
    assert json.loads((tmp_path/'r.json').read_text())['rows'][0]['model'] == 'cvcl_resnext50'


def test_peak_flops():
    gc = benchmark('gpu_check')
    assert gc.peak_flops('NVIDIA H100 80GB HBM3')[0] == 989e12
    assert gc.peak_flops('NVIDIA H100 PCIe')[0] == 756e12
    assert gc.peak_flops('NVIDIA H200')[0] == 989e12
    assert gc.peak_flops('Some GPU')[0] is None
    assert gc.peak_flops('Some GPU', 100)[0] == 100e12
