#!/bin/bash
# Device run (call 2): whole-model ground truth, then the full compute profile inside the
# remaining budget (TOTAL_S, default 500 s). Results -> $OUT/gt.tgz and $OUT/profile.tgz.
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONWARNINGS=ignore
T0=$(date +%s); TOTAL_S=${TOTAL_S:-500}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used,temperature.gpu,power.draw --format=csv
python3 -m calibration.groundtruth --out /tmp/gt --max-seconds ${GT_S:-170} 2>&1 | tee $OUT/gt_log.txt
tar czf $OUT/gt.tgz -C /tmp gt
LEFT=$(( TOTAL_S - $(date +%s) + T0 - 15 ))
echo "profile budget ${LEFT}s"
python3 -m calibration.run --out /tmp/h200 --device cuda --max-seconds $LEFT \
  --suite gemm,grouped_gemm,attn_decode,mla_decode,elementwise,attn_prefill,collectives 2>&1 | tee $OUT/profile_log.txt
tar czf $OUT/profile.tgz -C /tmp h200
nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
python3 benchmarks/calibrate_summary.py /tmp/h200 /tmp/gt
