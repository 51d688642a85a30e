#!/bin/bash
#$ -N curate-swallowcode_exp3
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID.$TASK_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -t 1-64
#$ -l cpu_160=1
#
# cptkit curation: swallowcode_exp3 (data_curation/swallowcode_exp3.yaml), 64 shard(s), one array task each
# CPU resources (no LLM stage).
# Stages: syntax, pylint. Output: /scratch/curated/swallowcode_exp3
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$((SGE_TASK_ID - 1))
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $JOB_ID on $(hostname)"

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

env CURATE_ROOT=/scratch/curated RAW_ROOT=/scratch/raw cptkit curate data_curation/swallowcode_exp3.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
