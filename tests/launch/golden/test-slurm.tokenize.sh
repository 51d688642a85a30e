#!/bin/bash
#SBATCH --job-name=tok-swallowcode_exp1
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-15
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#
# cptkit tokenization: data_mix/swallowcode_exp1.yaml, 16 shard(s), one array task each
# Rendered by `cptkit launch tokenize`; the merge job runs after every shard succeeded.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=16
echo "cptkit: tokenize task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export OMP_NUM_THREADS="1"

cptkit tokenize data_mix/swallowcode_exp1.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
