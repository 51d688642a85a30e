#!/bin/bash
#PBS -N curate-swallowcode
#PBS -j oe
#PBS -o /scratch/cptkit/logs/
#PBS -l walltime=04:00:00
#PBS -J 0-63
#PBS -q rt_HF
#PBS -l select=1:ncpus=192:ngpus=8
#PBS -P gab00000
#
# cptkit curation: swallowcode (data_curation/swallowcode.yaml), 64 shard(s), one array task each
# GPU node, LLM engine on 4 GPU(s) per task.
# Stages: sgcr, scor. Output: /scratch/curated/swallowcode
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$PBS_ARRAY_INDEX
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $PBS_JOBID on $(hostname)"

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

env CURATE_ROOT=/scratch/curated MODEL_ROOT=/scratch/models cptkit curate data_curation/swallowcode.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
