#!/bin/bash
#$ -N release-swallowcode_exp1
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -l cpu_160=1
#
# cptkit release (CPU): every evaluated checkpoint of /scratch/cptkit/runs/swallowcode_exp1 -> /scratch/cptkit/runs/swallowcode_exp1/release
# Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.
# Then uploads each to the Hub under tokyotech-llm (a repository per checkpoint).
# Rendered by `cptkit launch release`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: release job $JOB_ID on $(hostname)"

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

cptkit release /scratch/cptkit/runs/swallowcode_exp1 --every-eval --push tokyotech-llm
