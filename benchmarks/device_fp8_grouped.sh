#!/bin/bash
# Device call (one H200, bare image, repo root; carry .whl): the FP8 ragged grouped GEMM (issue 15,
# docs/vs_aiconfigurator.md mechanism 4: our FP8 expert GEMMs were a transfer from BF16).
#   1. clustersim calibrate --suite grouped_mm_fp8 --out $OUT/prof   (budget PROF_S, default 360 s)
#      -> grouped_mm_fp8.csv + metadata.json: torch._scaled_grouped_mm, e4m3, rowwise scales;
#   2. summary: FP8 against the shipped profile's BF16 ragged table at the same points.
# Files in $OUT: run_log.txt, prof/, summary.txt.
# Local dry run: DEVICE=cpu QUICK=--quick SKIP_INSTALL=1 OUT=/tmp/o bash benchmarks/device_fp8_grouped.sh
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-560}
source benchmarks/device_common.sh
install_clustersim
{
  echo "== 1. suite grouped_mm_fp8 (at $(elapsed) s)"
  timeout $(( ${PROF_S:-360} + 60 )) $(clustersim_cmd) calibrate --out "$OUT/prof" --suite grouped_mm_fp8 \
    --device "$DEVICE" $QUICK --max-seconds "${PROF_S:-360}"
  echo "calibrate exit code $?"
} 2>&1 | tee -a "$LOG"
{
  echo "== summary"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>/dev/null
  python3 - "$OUT" <<'PY'
import sys, pathlib
import pandas as pd
out = pathlib.Path(sys.argv[1])
f = out / "prof" / "grouped_mm_fp8.csv"
if not f.exists():
    print("no fp8 table"); sys.exit(0)
fp8 = pd.read_csv(f)
print("fp8 rows", len(fp8), "max TFLOP/s", round(fp8.tflops.max(), 1))
b = pathlib.Path("calibration/profiles/h200/grouped_mm_bf16.csv")
if b.exists():
    bf = pd.read_csv(b)
    j = fp8.merge(bf, on=["groups", "m_per_group", "n", "k"], suffixes=("_fp8", "_bf16"))
    j["speedup"] = j.seconds_bf16 / j.seconds_fp8
    print(j[["groups", "m_per_group", "n", "k", "tflops_fp8", "tflops_bf16", "speedup"]].to_string(max_rows=400))
PY
  echo "wall $(elapsed) s of $TOTAL_S"
} 2>&1 | tee "$OUT/summary.txt"
