#!/bin/bash
#SBATCH --job-name=curate-swallowcode
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-63
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#
# cptkit curation: swallowcode (data_curation/swallowcode.yaml), 64 shard(s), one array task each
# GPU node, LLM engine on 2 GPU(s) per task.
# Stages: sgcr, scor. Output: /scratch/curated/swallowcode
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export OMP_NUM_THREADS="1"

env CURATE_ROOT=/scratch/curated MODEL_ROOT=/scratch/models cptkit curate data_curation/swallowcode.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
