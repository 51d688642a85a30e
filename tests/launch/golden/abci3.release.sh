#!/bin/bash
#PBS -N release-swallowcode_exp1
#PBS -j oe
#PBS -o /scratch/cptkit/logs/
#PBS -l walltime=04:00:00
#PBS -q rt_HC
#PBS -l select=1:ncpus=32
#PBS -P gab00000
#
# cptkit release (CPU): every evaluated checkpoint of /scratch/cptkit/runs/swallowcode_exp1 -> /scratch/cptkit/runs/swallowcode_exp1/release
# Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.
# Then uploads each to the Hub under tokyotech-llm (a repository per checkpoint).
# Rendered by `cptkit launch release`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: release job $PBS_JOBID on $(hostname)"

# --- software environment (modules)
if ! command -v module >/dev/null 2>&1 && [[ -f /etc/profile.d/modules.sh ]]; then
  source /etc/profile.d/modules.sh
fi
module load hpcx/2.20 cuda/12.6/12.6.1 cudnn/9.5/9.5.1 nccl/2.23/2.23.4-1
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="abci3"
export CPTKIT_JOB_ID="$PBS_JOBID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"
export NCCL_IB_TIMEOUT="22"

cptkit release /scratch/cptkit/runs/swallowcode_exp1 --every-eval --push tokyotech-llm
