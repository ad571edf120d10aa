#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): DeepSeek-V2's MoE layer at EP 4/8/32
# (calibration.groundtruth --set moeoos: expert shapes no grouped table holds, every row hold-out)
# -> $OUT/moeoos/gt_moe_oos.csv; then the denseoos set again on this fresh machine (its noise floor)
# -> $OUT/denseoos_repeat/.
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_moe_oos.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-540}
source benchmarks/device_common.sh
install_clustersim
{
  for set in moeoos denseoos; do
    dir=$set; [ "$set" = denseoos ] && dir=denseoos_repeat
    echo "== ground truth $set (at $(elapsed) s)"
    timeout $(left 20) python3 -m calibration.groundtruth --set $set --out "$OUT/$dir" --device "$DEVICE" \
      $QUICK --max-seconds $(left 40)
    echo "groundtruth $set exit code $?"
  done
} 2>&1 | tee -a "$LOG"
{
  cat "$OUT"/moeoos/gt_moe_oos.csv
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
