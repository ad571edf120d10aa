#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): the widened ground truth of issue 14
# with a time budget, then on the same machine with what is left:
#   1. python -m calibration.groundtruth --set wide   (GT_S, default 300 s; plan ~60-90 s)
#   2. the new microbenchmark suites (grouped_mm_sparse, mla_decode_impls, attn_decode_long,
#      mla_glue) into /tmp/prof_same, so the mechanisms and the ground truth share one machine;
#   3. the first run's ground truth again (--set main) as a further repeat (run-to-run spread);
#   4. the other suites into /tmp/prof_same while time remains.
# Every step resumes and stops cleanly at its budget. Whole call <= TOTAL_S (540 s) with the install.
# Files in $OUT (5): run_log.txt, gt_wide.tgz (-> tests/data/measured/wide/), prof_same.tgz,
# gt_main_repeat.tgz (-> a repeat dir), summary.txt (row counts, fit/holdout errors of the shipped
# profile against the new points, times), printed last.
cd "$(dirname "$0")/.." || exit 1
source benchmarks/device_common.sh
install_clustersim
NEW_SUITES=grouped_mm_sparse,mla_decode_impls,attn_decode_long,mla_glue
OTHER_SUITES=mla_decode,attn_decode,attn_decode_tiles,grouped_gemm,moe_routing,elementwise,gemm,attn_prefill

{
  echo "== plan"
  python3 -m calibration.groundtruth --set wide --out /tmp/unused --plan-only $QUICK 2>&1
  python3 -m calibration.bench.plan --suite "$NEW_SUITES,$OTHER_SUITES" $QUICK
  echo "== 1. wide ground truth (at $(elapsed) s)"
  python3 -m calibration.groundtruth --set wide --out /tmp/gtw --device "$DEVICE" $QUICK --max-seconds "$(( $(left 150) < ${GT_S:-300} ? $(left 150) : ${GT_S:-300} ))"
} 2>&1 | tee -a "$LOG"
tar czf "$OUT/gt_wide.tgz" -C /tmp gtw

step() {  # step NAME MAX_SECONDS KEEP_SECONDS COMMAND... : run with min(MAX, left-KEEP) seconds
  local name=$1 max=$2 keep=$3; shift 3
  local b; b=$(left "$keep"); [ "$b" -gt "$max" ] && b=$max
  if [ "$b" -lt 20 ]; then echo "== $name: skipped, $b s left" | tee -a "$LOG"; return; fi
  echo "== $name (at $(elapsed) s, budget $b s)" | tee -a "$LOG"
  timeout $(( b + 30 )) "$@" --max-seconds "$b" 2>&1 | tee -a "$LOG"
}
step "2. new suites" 150 110 python3 -m calibration.run --out /tmp/prof_same --device "$DEVICE" $QUICK --suite "$NEW_SUITES"
step "3. main ground truth repeat" 120 70 python3 -m calibration.groundtruth --set main --out /tmp/gt_main_repeat --device "$DEVICE" $QUICK
step "4. other suites" 400 50 python3 -m calibration.run --out /tmp/prof_same --device "$DEVICE" $QUICK --suite "$OTHER_SUITES"
tar czf "$OUT/prof_same.tgz" -C /tmp prof_same 2>/dev/null
tar czf "$OUT/gt_main_repeat.tgz" -C /tmp gt_main_repeat 2>/dev/null

{
  echo "== summary"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
  python3 benchmarks/calibrate_summary.py /tmp/gtw /tmp/gt_main_repeat /tmp/prof_same 2>&1 | cut -c1-140
  mkdir -p /tmp/acc && cp tests/data/measured/gt_*.csv /tmp/acc/ && rm -rf /tmp/acc/wide && cp -r /tmp/gtw /tmp/acc/wide
  echo "-- shipped h200 profile vs the first run (fit) and the new points (fit / holdout):"
  python3 benchmarks/accuracy_report.py --measured /tmp/acc
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
