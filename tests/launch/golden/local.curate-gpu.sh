#!/bin/bash
#
# cptkit curation: swallowcode (data_curation/swallowcode.yaml), 64 shard(s), one array task each
# GPU node, LLM engine on 1 GPU(s) per task.
# Stages: sgcr, scor. Output: /scratch/curated/swallowcode
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=${CPTKIT_ARRAY_INDEX:-0}
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job local-$$ on $(hostname)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

env CURATE_ROOT=/scratch/curated MODEL_ROOT=/scratch/models cptkit curate data_curation/swallowcode.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
