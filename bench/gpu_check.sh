#!/usr/bin/env bash
# GPU check of the sparse FFN kernels (bench/gpu_kernels.py): correctness at Qwen2.5-7B shapes, do_bench timings
# of sparse vs dense for 1/4/16/64 tokens (1-16: the rewritten decode path, never timed on a GPU yet, launch by
# launch), the same with recorded routing at 4/16/64 tokens (decode path and union-per-tile path; masks from
# bench/gpu_recorded_masks.npz, exported on CPU by `bench/gpu_kernels.py --export-recorded`), bandwidth vs
# measured copy bandwidth, ncu dram bytes if ncu exists.
# Usage: bench/gpu_check.sh [OUT_DIR]     (default bench/results; writes gpu-kernels-<UTC>.json there)
# No install needed: runs from the source tree with PYTHONPATH. Finishes in under 8 minutes (hard stop 470 s).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-bench/results}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"
[ -f bench/gpu_recorded_masks.npz ] || echo "warning: bench/gpu_recorded_masks.npz missing: the recorded section will fail"
"$PYTHON" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
timeout -k 10 470 "$PYTHON" bench/gpu_kernels.py --out-dir "$OUT_DIR" "${@:2}"
status=$?
ls -l "$OUT_DIR"/gpu-kernels-*.json 2>/dev/null | tail -3
exit $status
