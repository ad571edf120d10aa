#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl), < 4 minutes in all: a fresh install,
# then benchmarks/mla_kernel_probe.py (issue 14's two remaining gaps): the kernels of V2-Lite MLA
# prefill/decode steps (3 layers) and of two small MoE layers under torch.profiler against the cost
# model's op lists, and causal SDPA at MLA prefill shapes with contiguous inputs vs the model's
# views. Files in $OUT: run_log.txt, mla_probe.tgz (per-step kernel CSVs, prefill_layouts.csv,
# summary.json), summary.txt (the probe's printout).
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_mla_probe.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-230}
source benchmarks/device_common.sh
install_clustersim
BUDGET=$(left 20)
echo "== mla_kernel_probe (at $(elapsed) s, budget $BUDGET s)" | tee -a "$LOG"
timeout "$BUDGET" python3 benchmarks/mla_kernel_probe.py --out /tmp/mla_probe --device "$DEVICE" $QUICK 2>>"$LOG" \
  | tee "$OUT/summary.txt"
RC=${PIPESTATUS[0]}
tar czf "$OUT/mla_probe.tgz" -C /tmp mla_probe
echo "probe exit code $RC; wall $(elapsed) s of $TOTAL_S" | tee -a "$OUT/summary.txt"
