#!/bin/bash
# Device smoke run (call 1): every suite on tiny shapes, then each suite on its real grid
# for a few seconds, then the ground truth with 2 layers and 2 points each. Results -> $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv
python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), torch.cuda.nccl.version())'
python3 -m calibration.run --out /tmp/smoke --quick --device cuda --max-seconds 60 2>&1 | tee $OUT/smoke_log.txt
for s in gemm grouped_gemm attn_prefill attn_decode mla_decode elementwise; do
  python3 -m calibration.run --out /tmp/sample --suite $s --device cuda --max-seconds ${SAMPLE_S:-10} 2>&1 | tail -4 | tee -a $OUT/sample_log.txt
done
python3 -m calibration.groundtruth --out /tmp/gt --layers 2 --max-points 2 --max-seconds 60 2>&1 | tee $OUT/gt_log.txt
tar czf $OUT/smoke.tgz -C /tmp smoke sample gt
python3 benchmarks/calibrate_summary.py /tmp/smoke /tmp/sample /tmp/gt
