#!/bin/bash
#
# cptkit tokenization: data_mix/swallowcode_exp1.yaml, 16 shard(s), one array task each
# Rendered by `cptkit launch tokenize`; the merge job runs after every shard succeeded.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=${CPTKIT_ARRAY_INDEX:-0}
NUM_TASKS=16
echo "cptkit: tokenize task $ARRAY_INDEX of $NUM_TASKS, job local-$$ on $(hostname)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

cptkit tokenize data_mix/swallowcode_exp1.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
