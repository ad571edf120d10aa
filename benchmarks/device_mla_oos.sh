#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): DeepSeek-V2 and V3 cut to 4 layers in MLA
# decode and prefill (calibration.groundtruth --set mlaoos: 128 heads, the production MLA shapes; every
# row hold-out) -> $OUT/mlaoos/gt_mla_{decode,prefill}_oos.csv.
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_mla_oos.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-540}
source benchmarks/device_common.sh
install_clustersim
{
  echo "== ground truth mlaoos (at $(elapsed) s)"
  timeout $(left 20) python3 -m calibration.groundtruth --set mlaoos --out "$OUT/mlaoos" --device "$DEVICE" \
    $QUICK --max-seconds $(left 40)
  echo "groundtruth mlaoos exit code $?"
} 2>&1 | tee -a "$LOG"
{
  cat "$OUT"/mlaoos/gt_mla_*_oos.csv
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
