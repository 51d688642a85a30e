#!/bin/bash
#$ -N tok-swallowcode_exp1
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID.$TASK_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -t 1-16
#$ -pe mpi 1
#
# cptkit tokenization: data_mix/swallowcode_exp1.yaml, 16 shard(s), one array task each
# Rendered by `cptkit launch tokenize`; the merge job runs after every shard succeeded.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$((SGE_TASK_ID - 1))
NUM_TASKS=16
echo "cptkit: tokenize task $ARRAY_INDEX of $NUM_TASKS, job $JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

cptkit tokenize data_mix/swallowcode_exp1.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
