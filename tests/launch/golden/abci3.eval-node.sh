#!/bin/bash
#PBS -N eval-future_code_ja
#PBS -j oe
#PBS -o /scratch/cptkit/logs/
#PBS -l walltime=04:00:00
#PBS -J 0-4
#PBS -q rt_HF
#PBS -l select=1:ncpus=192:ngpus=8
#PBS -P gab00000
#
# cptkit evaluation: suite future_code_ja on 5 checkpoint(s) of /scratch/cptkit/runs/swallowcode_exp1, one array task each
# vLLM on 8 GPU(s) per task (one node). Rendered by `cptkit launch eval`.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$PBS_ARRAY_INDEX
NUM_TASKS=5
echo "cptkit: eval task $ARRAY_INDEX of $NUM_TASKS, job $PBS_JOBID on $(hostname)"

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

cptkit eval /scratch/cptkit/runs/swallowcode_exp1 --suite future_code_ja \
    --backend vllm --model-args tensor_parallel_size=8 \
    --iteration-index "$ARRAY_INDEX"
