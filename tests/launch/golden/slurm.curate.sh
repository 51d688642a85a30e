#!/bin/bash
#SBATCH --job-name=curate-swallowcode_exp3
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-63
#SBATCH --partition=gpu
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#
# cptkit curation: swallowcode_exp3 (data_curation/swallowcode_exp3.yaml), 64 shard(s), one array task each
# CPU resources (no LLM stage).
# Stages: syntax, pylint. Output: /scratch/curated/swallowcode_exp3
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"

env CURATE_ROOT=/scratch/curated RAW_ROOT=/scratch/raw cptkit curate data_curation/swallowcode_exp3.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
