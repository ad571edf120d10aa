#!/bin/bash
# Device run: MoE-layer ground truth with the ragged grouped GEMM, then the full compute
# profile with back-to-back (loop) timing for long kernels. Results -> $OUT/*.tgz.
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv
python3 -m calibration.groundtruth --out /tmp/gt --parts moe_ep4 --max-seconds ${GT_S:-90} 2>&1 | tee $OUT/gt_log.txt
tar czf $OUT/gt.tgz -C /tmp gt
python3 -m calibration.run --out /tmp/h200 --device cuda --max-seconds ${PROFILE_S:-400} \
  --suite gemm,grouped_gemm,attn_decode,mla_decode,elementwise,attn_prefill 2>&1 | tee $OUT/profile_log.txt
tar czf $OUT/profile.tgz -C /tmp h200
python3 benchmarks/calibrate_summary.py /tmp/h200 /tmp/gt 2>&1 | tail -40
