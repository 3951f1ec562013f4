"benchmarks/bench_study.py's memory row (issue 17): the peak resident memory of a study, its process and its kernels together."
import sys
from conftest import benchmark


def test_peak_memory_sums_the_process_tree():
    "A parent that holds 100 MB and a child that holds 300 MB at the same time: the peak counts both."
    code = ("import subprocess, sys, time; a = bytearray(100 * 2**20); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; b = bytearray(300 * 2**20); time.sleep(3)']); "
            "c.wait(); sys.exit(3)")
    r = benchmark('bench_study').peak_memory([sys.executable, '-c', code], interval=0.2)
    assert r['returncode'] == 3 and r['peak_processes'] == 2
    assert r['peak_rss'] >= 400 * 2**20 and 400 * 2**20 <= r['peak_pss'] <= r['peak_rss'], r
    assert r['peak_rss'] < 1500 * 2**20, r   # two Pythons and their buffers, not more

# the row of a whole study (`--study`): tests/test_determinism.py, on its rerun of the session's tiny study
