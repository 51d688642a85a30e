#!/bin/bash
#SBATCH --job-name=eval-future_code_ja
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-4
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#
# cptkit evaluation: suite future_code_ja on 5 checkpoint(s) of /scratch/cptkit/runs/tiny_cpu, one array task each
# vLLM on 2 GPU(s) per task (one node). Rendered by `cptkit launch eval`.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=5
echo "cptkit: eval task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export OMP_NUM_THREADS="1"

cptkit eval /scratch/cptkit/runs/tiny_cpu --suite future_code_ja \
    --backend vllm --model-args tensor_parallel_size=2 \
    --iteration-index "$ARRAY_INDEX"
