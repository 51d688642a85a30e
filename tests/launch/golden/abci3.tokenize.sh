#!/bin/bash
#PBS -N tok-swallowcode_exp1
#PBS -j oe
#PBS -o /scratch/cptkit/logs/
#PBS -l walltime=04:00:00
#PBS -J 0-15
#PBS -q rt_HC
#PBS -l select=1:ncpus=32
#PBS -P gab00000
#
# cptkit tokenization: data_mix/swallowcode_exp1.yaml, 16 shard(s), one array task each
# Rendered by `cptkit launch tokenize`; the merge job runs after every shard succeeded.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$PBS_ARRAY_INDEX
NUM_TASKS=16
echo "cptkit: tokenize task $ARRAY_INDEX of $NUM_TASKS, job $PBS_JOBID on $(hostname)"

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

cptkit tokenize data_mix/swallowcode_exp1.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
