#!/bin/bash
#$ -N eval-future_code_ja
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID.$TASK_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -t 1-5
#$ -l node_f=1
#$ -pe mpi 2
#
# cptkit evaluation: suite future_code_ja on 5 checkpoint(s) of /scratch/cptkit/runs/tiny_cpu, one array task each
# vLLM on 2 GPU(s) per task (one node). Rendered by `cptkit launch eval`.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$((SGE_TASK_ID - 1))
NUM_TASKS=5
echo "cptkit: eval task $ARRAY_INDEX of $NUM_TASKS, job $JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

cptkit eval /scratch/cptkit/runs/tiny_cpu --suite future_code_ja \
    --backend vllm --model-args tensor_parallel_size=2 \
    --iteration-index "$ARRAY_INDEX"
