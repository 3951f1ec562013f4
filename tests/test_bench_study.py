"benchmarks/bench_study.py's memory row (issue 17): the peak resident memory of a study, its process and its kernels together."
import importlib.util, sys
from pathlib import Path
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location('bench_study', ROOT/'benchmarks'/'bench_study.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_peak_memory_sums_the_process_tree():
    "A parent that holds 100 MB and a child that holds 300 MB at the same time: the peak counts both."
    code = ("import subprocess, sys, time; a = bytearray(100 * 2**20); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; b = bytearray(300 * 2**20); time.sleep(3)']); "
            "c.wait(); sys.exit(3)")
    r = _bench().peak_memory([sys.executable, '-c', code], interval=0.2)
    assert r['returncode'] == 3 and r['peak_processes'] == 2
    assert r['peak_rss'] >= 400 * 2**20 and 400 * 2**20 <= r['peak_pss'] <= r['peak_rss'], r
    assert r['peak_rss'] < 1500 * 2**20, r   # two Pythons and their buffers, not more


def test_study_memory_row(tmp_path, capsys):
    "--study runs a whole (tiny) study: the table's row gives its peak memory with the kernels (more than the study process alone)."
    sets = [x for x in TINY if x.startswith(('reference.', 'world.', 'eval.'))] + ['conditions=[reference]']
    rows = _bench().main(['--study', 'quick', '--study-only'] + sum([['--study-set', x] for x in sets], []))
    out = capsys.readouterr().out
    (name, workload, mem, secs), = rows
    assert name == 'study memory' and 'babyvlm study --profile quick' in workload and '(exit' not in secs
    assert 'study memory' in out and 'GiB' in out and mem in out
    n = int(workload.split('(')[-1].split()[0]); assert n >= 2   # the study process and at least one kernel
    rss, pss = (float(mem.split(k)[1].split()[0].rstrip(',')) for k in ('RSS ', 'PSS '))
    assert 0.3 < pss <= rss < 8, mem   # a Python with torch is a few hundred MB; the tiny study is far below the 6 GiB target
