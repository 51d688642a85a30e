#!/bin/bash
#
# cptkit evaluation: suite future_code_ja on 5 checkpoint(s) of /scratch/cptkit/runs/tiny_cpu, one array task each
# vLLM on 1 GPU(s) per task (the eval resources). Rendered by `cptkit launch eval`.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=${CPTKIT_ARRAY_INDEX:-0}
NUM_TASKS=5
echo "cptkit: eval task $ARRAY_INDEX of $NUM_TASKS, job local-$$ on $(hostname)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

cptkit eval /scratch/cptkit/runs/tiny_cpu --suite future_code_ja \
    --backend vllm --model-args tensor_parallel_size=1 \
    --iteration-index "$ARRAY_INDEX"
