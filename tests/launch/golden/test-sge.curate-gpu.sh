#!/bin/bash
#$ -N curate-swallowcode
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID.$TASK_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -t 1-64
#$ -l node_f=1
#$ -pe mpi 2
#
# cptkit curation: swallowcode (data_curation/swallowcode.yaml), 64 shard(s), one array task each
# GPU node, LLM engine on 2 GPU(s) per task.
# Stages: sgcr, scor. Output: /scratch/curated/swallowcode
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$((SGE_TASK_ID - 1))
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

env CURATE_ROOT=/scratch/curated MODEL_ROOT=/scratch/models cptkit curate data_curation/swallowcode.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
