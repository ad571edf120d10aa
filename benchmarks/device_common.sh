# Sourced by benchmarks/device_*.sh (one lent GPU machine, run from the repo root, bare image).
# Fresh install of clustersim and simpy from the carried wheels in .whl/ (and pydantic from
# .whl/opt/ only if the image lacks it), the NVLink-multicast guards, a clock, and a log in $OUT.
# Make .whl with benchmarks/device_wheels.sh (wheels for the image's Python 3.12). The device's copy
# of the tree reports its checkout's base commit as HEAD: give the commit run as
# CLUSTERSIM_GIT_SHA=<sha> in the device command so the runs' metadata name it.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
T0=$(date +%s)
TOTAL_S=${TOTAL_S:-540}
LOG="$OUT/run_log.txt"
# local dry runs (not on the device): DEVICE=cpu QUICK=--quick SKIP_INSTALL=1
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}

elapsed() { echo $(( $(date +%s) - T0 )); }
# seconds left of TOTAL_S after keeping $1 seconds for what follows
left() { echo $(( TOTAL_S - $(elapsed) - ${1:-0} )); }

install_clustersim() {
  if [ -n "$SKIP_INSTALL" ]; then echo "install skipped (SKIP_INSTALL)" | tee -a "$LOG"; return; fi
  CLUSTERSIM_GIT_SHA=${CLUSTERSIM_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null)}
  export CLUSTERSIM_GIT_SHA
  {
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used,temperature.gpu,power.draw --format=csv
    python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
    python3 -m pip install -q --no-index --no-deps .whl/*.whl || echo "WARNING: simpy wheel install failed"
    python3 -c 'import pydantic' 2>/dev/null || python3 -m pip install -q --no-index --no-deps .whl/opt/*.whl
    python3 -m pip install -q --no-deps --no-build-isolation -e . || echo "WARNING: editable install failed"
    python3 -c 'import simpy, pydantic, clustersim.cli; print("install ok:", simpy.__version__, pydantic.VERSION)'
    echo "install done at $(elapsed) s; git sha ${CLUSTERSIM_GIT_SHA:-unknown}"
  } 2>&1 | tee -a "$LOG"
}

# the console script from the editable install, else the module
clustersim_cmd() { command -v clustersim >/dev/null 2>&1 && echo clustersim || echo "python3 -m clustersim.cli"; }
