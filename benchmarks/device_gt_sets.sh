#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): ground-truth sets of
# calibration.groundtruth, each into $OUT/<set> (a set named twice goes to $OUT/<set>_repeat the
# second time: the same points on the same machine's fresh build, the noise floor).
#   bash benchmarks/device_gt_sets.sh denseoos           # 2026-12-02: dense models and TP ranks off the tables
#   bash benchmarks/device_gt_sets.sh moeoos denseoos     # DeepSeek-V2's MoE layer; denseoos again
#   bash benchmarks/device_gt_sets.sh mlaoos              # DeepSeek-V2 and V3 cut to 4 layers
# Files in $OUT: run_log.txt, one folder per set, summary.txt (every table written).
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_gt_sets.sh denseoos
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-540}
source benchmarks/device_common.sh
[ $# -gt 0 ] || { echo "usage: $0 SET [SET ...] (calibration.groundtruth --set names)" >&2; exit 2; }
install_clustersim
{
  for set in "$@"; do
    dir=$set; [ -d "$OUT/$set" ] && dir=${set}_repeat
    echo "== ground truth $set -> $dir (at $(elapsed) s)"
    timeout $(left 20) python3 -m calibration.groundtruth --set "$set" --out "$OUT/$dir" --device "$DEVICE" \
      $QUICK --max-seconds $(left 40)
    echo "groundtruth $set exit code $?"
  done
} 2>&1 | tee -a "$LOG"
{
  for f in "$OUT"/*/gt_*.csv; do echo "== $f"; cat "$f"; done
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
