#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): a fresh install, then
#   clustersim calibrate --check --out /tmp/prof   (default suite list; collectives skip on one GPU)
# i.e. every microbenchmark suite, then the self-check (calibration.groundtruth set 'check':
# Llama-8B prefill/decode, a DeepSeek-V3 EP-4 MoE layer at 4096/512/8 tokens, V2-Lite MLA decode)
# predicted from the profile just written. Whole call <= TOTAL_S (540 s) including the install.
# Files in $OUT (3): run_log.txt, profile.tgz (the profile dir with check/, check.csv, check.json),
# summary.txt. The summary (row counts, the self-check table, times) prints last.
cd "$(dirname "$0")/.." || exit 1
source benchmarks/device_common.sh
install_clustersim
{
  echo "== plan (suites: recorded or sized; check: sized from its operators)"
  python3 -m calibration.bench.plan $QUICK
  python3 -m calibration.groundtruth --set check --out /tmp/unused --plan-only $QUICK 2>&1
} 2>&1 | tee -a "$LOG"

BUDGET=$(left 45)  # keep 45 s for the tarball and the summary
echo "== clustersim calibrate --check --max-seconds $BUDGET (at $(elapsed) s)" | tee -a "$LOG"
timeout $(( BUDGET + 30 )) $(clustersim_cmd) calibrate --check --out /tmp/prof --device "$DEVICE" $QUICK --max-seconds "$BUDGET" 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
tar czf "$OUT/profile.tgz" -C /tmp prof

{
  echo "== summary"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader
  python3 benchmarks/calibrate_summary.py /tmp/prof /tmp/prof/check 2>&1 | cut -c1-150
  python3 -c "import json; m=json.load(open('/tmp/prof/metadata.json')); print('suite seconds', m.get('suite_seconds'), 'complete', m.get('complete'))"
  [ -f /tmp/prof/check.csv ] && python3 -c "
import json
d = json.load(open('/tmp/prof/check.json'))
print(f\"self-check on {d['gpu_name']} as {d['cluster']}: median |error| {d['median_abs_error']:.1%}, worst {d['worst_abs_error']:.1%}\")
for r in d['rows']:
    print(f\"  {r['case']:34s} {r['point']:13s} measured {r['measured_s']*1e3:9.3f} ms predicted {r['predicted_s']*1e3:9.3f} ms {r['error']:+7.1%}\")
"
  echo "calibrate exit code $RC; wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
