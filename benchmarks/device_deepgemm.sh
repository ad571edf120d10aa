#!/bin/bash
# Device call (one H200, bare image, repo root; carry .dg): DeepGEMM's FP8 kernels measured as
# themselves (the `fused` kernel set's FP8 GEMMs, which no table of ours measured).
#   0. .dg/DeepGEMM holds DeepGEMM's source (github.com/deepseek-ai/DeepGEMM, the commit in
#      $OUT/run_log.txt) with its pinned CUTLASS (include/ of f3fde583) and fmt (include/ of 553ec11e)
#      under third-party/, as `git archive` of the three repositories wrote them (prepare it here:
#      benchmarks/deepgemm_probe.py's docstring);
#   1. its C++ JIT module is built with the image's torch and nvcc (kept in .dg between warm calls);
#   2. every point is run once untimed in N parallel processes (DeepGEMM compiles each kernel at
#      first use), then timed in one process -> $OUT/deepgemm_h200.csv.
# Files in $OUT: run_log.txt, build.log, warm_*.log, deepgemm_h200.csv, probe.log.
cd "$(dirname "$0")/.." || exit 1
TOTAL_S=${TOTAL_S:-570}
source benchmarks/device_common.sh
ROOT=$PWD
DG=$ROOT/.dg/DeepGEMM
export DG_JIT_CACHE_DIR=$ROOT/.dg/jit_cache MAX_JOBS=${MAX_JOBS:-16}
N=${WARM_PROCS:-8}
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used,temperature.gpu,power.draw --format=csv
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
  which nvcc; nvcc --version | tail -2; gcc --version | head -1
  echo "DeepGEMM: $(grep -m1 __version__ $DG/deep_gemm/__init__.py) source commit ${DG_COMMIT:-see .dg/COMMITS}"
  cat "$ROOT/.dg/COMMITS" 2>/dev/null
  cd "$DG" || exit 1
  ln -sfn "$DG/third-party/cutlass/include/cutlass" deep_gemm/include/cutlass
  ln -sfn "$DG/third-party/cutlass/include/cute" deep_gemm/include/cute
  if ! ls deep_gemm/_C*.so >/dev/null 2>&1; then
    echo "== 1. build (at $(elapsed) s)"
    # the image's default C++ compiler (/opt/gcc) built a module whose iostreams crash against the
    # libstdc++ loaded at run time (a segfault in operator<< on the first GEMM): the system g++
    CXX=${DG_CXX:-/usr/bin/g++} CC=${DG_CC:-/usr/bin/gcc} timeout 330 python3 setup.py build > "$OUT/build.log" 2>&1
    echo "build exit code $? at $(elapsed) s"; tail -5 "$OUT/build.log"
    so=$(find build -name "_C*.so" -type f | head -n 1)
    [ -n "$so" ] && cp "$so" deep_gemm/ && strip --strip-debug -o /tmp/c.so "$so" && gzip -9 -c /tmp/c.so > "$OUT/C.so.gz"
  fi
  cd "$ROOT"
  export PYTHONPATH=$DG:$DG/tests
  python3 -c 'import deep_gemm; print("deep_gemm imported:", deep_gemm.__file__, deep_gemm.get_num_sms())' || exit 1
  echo "== smoke: one masked point (at $(elapsed) s)"
  timeout 200 python3 -X faulthandler benchmarks/deepgemm_probe.py --out /tmp/smoke.csv --part 0/1000 --warm-only 2>&1 | tail -8
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "smoke failed"; exit 1; }
  echo "== 2. warm-up in $N processes (at $(elapsed) s)"
  for i in $(seq 0 $((N - 1))); do
    timeout $(left 150) python3 benchmarks/deepgemm_probe.py --out /tmp/warm_$i.csv --part $i/$N --warm-only \
      --only "${ONLY:-masked,contiguous,dense}" --budget-s $(left 180) > "$OUT/warm_$i.log" 2>&1 &
  done
  wait
  echo "warm-up done at $(elapsed) s"; grep -h "Error\|error" "$OUT"/warm_*.log | head -5
  echo "== 3. timed (at $(elapsed) s)"
  timeout $(left 10) python3 benchmarks/deepgemm_probe.py --out "$OUT/deepgemm_h200.csv" \
    --only "${ONLY:-masked,contiguous,dense}" --budget-s $(left 25) > "$OUT/probe.log" 2>&1
  echo "probe exit code $? at $(elapsed) s; rows $(($(wc -l < "$OUT/deepgemm_h200.csv") - 1))"
} 2>&1 | tee -a "$LOG"
