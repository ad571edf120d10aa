#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): the in_step_gap suite
# (calibration.bench.in_step_gap) into $OUT/isg, then again into $OUT/isg_repeat (a fresh process:
# the noise floor of the gap per op).
#   bash benchmarks/device_in_step_gap.sh
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_in_step_gap.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-540}
source benchmarks/device_common.sh
install_clustersim
{
  for dir in isg isg_repeat; do
    echo "== in_step_gap -> $dir (at $(elapsed) s)"
    timeout $(left 20) python3 -m calibration.run --suite in_step_gap --out "$OUT/$dir" --device "$DEVICE" \
      $QUICK --max-seconds $(left 40)
    echo "in_step_gap exit code $?"
  done
} 2>&1 | tee -a "$LOG"
{
  for f in "$OUT"/*/in_step_gap.csv; do echo "== $f"; cat "$f"; done
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
