#!/bin/bash
#PBS -N convert-mcore-to-hf
#PBS -j oe
#PBS -o /scratch/cptkit/logs/
#PBS -l walltime=02:00:00
#PBS -q rt_HC
#PBS -l select=1:ncpus=32
#PBS -P gab00000
#
# cptkit conversion (CPU): convert mcore-to-hf /scratch/cptkit/runs/swallowcode_exp1/checkpoints/iter_0012500 /scratch/hf/out
# Rendered by `cptkit launch convert`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: convert job $PBS_JOBID on $(hostname)"

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

cptkit convert mcore-to-hf /scratch/cptkit/runs/swallowcode_exp1/checkpoints/iter_0012500 /scratch/hf/out
