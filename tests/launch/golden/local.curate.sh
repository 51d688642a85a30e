#!/bin/bash
#
# cptkit curation: swallowcode_exp3 (data_curation/swallowcode_exp3.yaml), 64 shard(s), one array task each
# CPU resources (no LLM stage).
# Stages: syntax, pylint. Output: /scratch/curated/swallowcode_exp3
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

env CURATE_ROOT=/scratch/curated RAW_ROOT=/scratch/raw cptkit curate data_curation/swallowcode_exp3.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
