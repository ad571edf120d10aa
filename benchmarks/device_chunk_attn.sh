#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): prefill after cached context (issue 14).
#   0. the plans: suite attn_prefill_ctx (~25 s sized, x1.5 safety) and ground-truth set chunk (~22 s);
#   1. clustersim calibrate --suite attn_prefill_ctx --out $OUT/prof   (budget PROF_S, default 150 s)
#      -> attn_prefill_ctx_bf16.csv + metadata.json: lower-right causal SDPA of a chunk after context;
#   2. python -m calibration.groundtruth --set chunk --out $OUT/gt     (budget GT_S, default 150 s)
#      -> gt_dense_chunk.csv + groundtruth_metadata.json: Llama-3.1-8B chunked-prefill steps;
#   3. summary: the lookup from the table's fit rows against every row, per split, and the chunk
#      ground truth predicted with the new table, without it (roofline) and with the context dropped.
# Every step resumes and stops cleanly at its budget. Whole call <= TOTAL_S (420 s) with the install.
# Files in $OUT: run_log.txt, prof/ and gt/ (ship them: python benchmarks/ship_chunk_attn.py --prof OUT/prof --gt OUT/gt),
# summary.txt (printed last).
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_chunk_attn.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-420}
source benchmarks/device_common.sh
install_clustersim

budget() {  # budget MAX KEEP: min(MAX, seconds left after keeping KEEP)
  local b; b=$(left "$2"); [ "$b" -gt "$1" ] && b=$1; [ "$b" -lt 10 ] && b=10; echo "$b"
}
{
  echo "== plan"
  python3 -m calibration.bench.plan --suite attn_prefill_ctx $QUICK
  python3 -m calibration.groundtruth --set chunk --out /tmp/unused --plan-only $QUICK 2>&1
  B=$(budget "${PROF_S:-150}" 190)
  echo "== 1. suite attn_prefill_ctx (at $(elapsed) s, budget $B s)"
  timeout $(( B + 60 )) $(clustersim_cmd) calibrate --out "$OUT/prof" --suite attn_prefill_ctx --device "$DEVICE" \
    $QUICK --max-seconds "$B"
  echo "calibrate exit code $?"
  B=$(budget "${GT_S:-150}" 40)
  echo "== 2. ground truth set chunk (at $(elapsed) s, budget $B s)"
  timeout $(( B + 60 )) python3 -m calibration.groundtruth --set chunk --out "$OUT/gt" --device "$DEVICE" $QUICK \
    --max-seconds "$B"
  echo "groundtruth exit code $?"
} 2>&1 | tee -a "$LOG"

{
  echo "== summary"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>/dev/null
  python3 -c "import json; m=json.load(open('$OUT/prof/metadata.json')); print('suite seconds', m.get('suite_seconds'), 'complete', m.get('complete'))"
  python3 benchmarks/chunk_attn_report.py "$OUT/prof" "$OUT/gt" 2>&1 | cut -c1-220
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
