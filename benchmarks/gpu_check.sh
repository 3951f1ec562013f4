#!/usr/bin/env bash
# Issue 6: train the paper-profile models (CVCL ResNeXt-50, BabyLLaVA-GPT2 phase 2) on synthetic 224-px data for a
# fixed number of steps on one GPU and print samples/s, peak memory and MFU (benchmarks/gpu_check.py does the work).
# Meant to finish well within 8 minutes on one H100 (about 1-2 minutes after the environment check).
#
# usage: bash benchmarks/gpu_check.sh [gpu_check.py arguments, e.g. --steps 50 --batch 128 --json out.json]
#   PYTHON   interpreter (default: python3)
#   WHEELS   folder of wheels for packages missing on the machine, installed offline (default: gpu_wheels;
#            fill it beforehand with `pip download --no-deps -d gpu_wheels open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 timm==1.0.31`)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-gpu_wheels}
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== environment"
date -u; uname -m
"$PY" - <<'PYEOF'
import sys; print('python', sys.version.split()[0], sys.executable)
try:
    import torch
    print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version(),
          '| GPU available', torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print('device', p.name, f'| capability {p.major}.{p.minor} | {p.total_memory / 2**30:.1f} GiB | {p.multi_processor_count} SMs')
except Exception as e: print('torch: import failed:', type(e).__name__, e)
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader

# module -> distribution (wheel name prefix); a module that fails to import is installed from $WHEELS if a wheel is there
missing=()
check() { "$PY" -c "import $1" 2>/dev/null; }
for pair in torchvision:torchvision numpy:numpy PIL:pillow yaml:pyyaml tqdm:tqdm regex:regex huggingface_hub:huggingface_hub \
            safetensors:safetensors tokenizers:tokenizers transformers:transformers wcwidth:wcwidth ftfy:ftfy \
            timm:timm open_clip:open_clip_torch; do
    mod=${pair%%:*}; dist=${pair#*:}
    if [ "$mod" = timm ]; then  # open_clip_torch 3.3.0 needs timm >= 1.0.17
        "$PY" -c "import timm, sys; v = tuple(int(x) for x in timm.__version__.split('.')[:3]); sys.exit(v < (1, 0, 17))" 2>/dev/null || missing+=("$dist")
    else check "$mod" || missing+=("$dist"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== missing or too old: ${missing[*]}; installing from $WHEELS (offline)"
    whls=(); absent=()
    for d in "${missing[@]}"; do
        w=$(ls "$WHEELS"/${d}-*.whl 2>/dev/null | head -1)
        if [ -n "$w" ]; then whls+=("$w"); else absent+=("$d"); fi
    done
    if [ ${#whls[@]} -gt 0 ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${whls[@]}" \
            || { echo "gpu_check.sh: pip install from $WHEELS failed"; exit 2; }
        export PYTHONPATH="$PWD:$SITE${PYTHONPATH#$PWD}"
    fi
    [ ${#absent[@]} -gt 0 ] && echo "gpu_check.sh: no wheel in $WHEELS for: ${absent[*]} (the check may fail to import them)"
fi
"$PY" - <<'PYEOF'
from importlib import metadata
for d in ('torch', 'torchvision', 'transformers', 'tokenizers', 'safetensors', 'timm', 'open_clip_torch', 'ftfy', 'numpy'):
    try: v = metadata.version(d)
    except metadata.PackageNotFoundError: v = 'MISSING'
    print(f'  {d} {v}')
import importlib
for m in ('open_clip', 'timm', 'transformers'):
    try: print(f'  {m} imported from {importlib.import_module(m).__file__}')
    except Exception as e: print(f'  {m}: import failed: {type(e).__name__}: {e}')
PYEOF

echo "== gpu_check.py $*"
start=$(date +%s)
"$PY" benchmarks/gpu_check.py "$@"
rc=$?
echo "== gpu_check.sh: exit $rc after $(( $(date +%s) - start )) s"
exit $rc
