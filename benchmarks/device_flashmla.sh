#!/bin/bash
# Device call (one H200, bare image, repo root; carry .fm): FlashMLA's dense decode measured as itself
# (the `fused` kernel set's MLA decode, timed otherwise from FlashMLA's published H800 figures).
#   0. .fm/FlashMLA holds FlashMLA's source (github.com/deepseek-ai/FlashMLA, the commit in .fm/COMMITS)
#      with its pinned CUTLASS (include/ and tools/util/include/ of 147f5673) under csrc/cutlass;
#   1. its extension is built for sm_90a only (FLASH_MLA_DISABLE_SM100=1) with the system g++;
#   2. benchmarks/flashmla_probe.py -> $OUT/flashmla_h200.csv.
# Files in $OUT: run_log.txt, build.log (tail), flashmla_h200.csv, probe.log, FM.so.gz (the built module).
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-570}
source benchmarks/device_common.sh
ROOT=$PWD
FM=$ROOT/.fm/FlashMLA
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used,temperature.gpu,power.draw --format=csv
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
  nvcc --version | tail -1; cat "$ROOT/.fm/COMMITS"
  cd "$FM" || exit 1
  if ! ls flash_mla/cuda*.so >/dev/null 2>&1; then
    echo "== 1. build (at $(elapsed) s)"
    FLASH_MLA_DISABLE_SM100=1 NVCC_THREADS=4 MAX_JOBS=${MAX_JOBS:-16} CXX=/usr/bin/g++ CC=/usr/bin/gcc \
      timeout ${BUILD_S:-420} python3 setup.py build_ext --inplace > /tmp/build.log 2>&1
    echo "build exit code $? at $(elapsed) s"; tail -30 /tmp/build.log > "$OUT/build.log"; grep -m5 -i " error" /tmp/build.log
    so=$(ls flash_mla/cuda*.so 2>/dev/null | head -n 1)
    [ -n "$so" ] && strip --strip-debug -o /tmp/fm.so "$so" && gzip -9 -c /tmp/fm.so > "$OUT/FM.so.gz"
  fi
  cd "$ROOT"
  export PYTHONPATH=$FM
  python3 -c 'import flash_mla; print("flash_mla imported:", flash_mla.__file__)' || exit 1
  echo "== 2. probe (at $(elapsed) s)"
  timeout $(left 10) python3 benchmarks/flashmla_probe.py --out "$OUT/flashmla_h200.csv" --budget-s $(left 25) \
    > "$OUT/probe.log" 2>&1
  echo "probe exit code $? at $(elapsed) s; rows $(($(wc -l < "$OUT/flashmla_h200.csv") - 1))"
} 2>&1 | tee -a "$LOG"
