#!/bin/bash
#$ -N convert-mcore-to-hf
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=02:00:00
#$ -l cpu_160=1
#
# cptkit conversion (CPU): convert mcore-to-hf /scratch/cptkit/runs/swallowcode_exp1/checkpoints/iter_0012500 /scratch/hf/out
# Rendered by `cptkit launch convert`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: convert job $JOB_ID on $(hostname)"

# --- software environment (modules)
if ! command -v module >/dev/null 2>&1 && [[ -f /etc/profile.d/modules.sh ]]; then
  source /etc/profile.d/modules.sh
fi
module load cuda/12.1.0 cudnn/9.0.0 nccl/2.20.5 openmpi/5.0.2-gcc
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="tsubame4"
export CPTKIT_JOB_ID="$JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"
export NCCL_IB_TIMEOUT="22"
export NCCL_IB_QPS_PER_CONNECTION="8"
export TORCH_NCCL_AVOID_RECORD_STREAMS="1"
export UB_SKIPMC="1"

cptkit convert mcore-to-hf /scratch/cptkit/runs/swallowcode_exp1/checkpoints/iter_0012500 /scratch/hf/out
