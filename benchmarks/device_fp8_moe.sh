#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): FP8 MoE layer ground truth and the
# eager activation-quantisation kernel (weak point of the fourth landing: the eager FP8 MoE op list
# had no quantisation kernel and no FP8 MoE-layer ground truth showed its size).
#   1. the elementwise suite resumed over a copy of the shipped H200 profile: only the new op
#      quant_fp8 is measured (every other row is already there) -> $OUT/prof/elementwise_bf16.csv;
#   2. python -m calibration.groundtruth --set fp8moe: DeepSeek-V3 MoE layer, one EP rank (EP 4, 32),
#      e4m3 experts and shared experts, 1..8192 tokens per rank -> $OUT/fp8moe/gt_moe_fp8.csv.
# Files in $OUT: run_log.txt, prof/ (elementwise_bf16.csv, metadata.json), fp8moe/, summary.txt.
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_fp8_moe.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-560}
source benchmarks/device_common.sh
install_clustersim
{
  echo "== 1. elementwise quant_fp8 over the shipped profile (at $(elapsed) s)"
  rm -rf /tmp/prof && cp -r calibration/profiles/h200 /tmp/prof && rm -f /tmp/prof/__init__.py
  timeout $(( ${PROF_S:-150} + 60 )) $(clustersim_cmd) calibrate --out /tmp/prof --suite elementwise \
    --device "$DEVICE" $QUICK --max-seconds "${PROF_S:-150}"
  echo "calibrate exit code $?"
  mkdir -p "$OUT/prof" && cp /tmp/prof/elementwise_bf16.csv /tmp/prof/metadata.json "$OUT/prof/"
  echo "== 2. ground truth fp8moe (at $(elapsed) s)"
  timeout $(left 30) python3 -m calibration.groundtruth --set fp8moe --out "$OUT/fp8moe" --device "$DEVICE" \
    $QUICK --max-seconds $(left 60)
  echo "groundtruth exit code $?"
} 2>&1 | tee -a "$LOG"
{
  grep quant_fp8 "$OUT/prof/elementwise_bf16.csv"
  cat "$OUT/fp8moe/gt_moe_fp8.csv"
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
