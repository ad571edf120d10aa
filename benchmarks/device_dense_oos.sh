#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): whole BF16 dense steps of models and
# tensor-parallel ranks the GEMM tables never measured whole (calibration.groundtruth --set denseoos:
# Qwen-2.5-72B TP 4/8, Llama-3.1-70B TP 2/8, Llama-3.1-405B TP 8, Llama-3.1-8B TP 2; prefill and
# decode, every row hold-out) -> $OUT/denseoos/gt_dense_{prefill,decode}_oos.csv.
# Files in $OUT: run_log.txt, denseoos/, summary.txt.
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_dense_oos.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-540}
source benchmarks/device_common.sh
install_clustersim
{
  echo "== ground truth denseoos (at $(elapsed) s)"
  timeout $(left 20) python3 -m calibration.groundtruth --set denseoos --out "$OUT/denseoos" --device "$DEVICE" \
    $QUICK --max-seconds $(left 50)
  echo "groundtruth exit code $?"
} 2>&1 | tee -a "$LOG"
{
  cat "$OUT"/denseoos/gt_dense_*_oos.csv
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
