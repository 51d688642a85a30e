#!/bin/bash
#SBATCH --job-name=eval-ja
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-4
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#
# cptkit evaluation: suite ja on 5 checkpoint(s) of /scratch/cptkit/runs/tiny_cpu, one array task each
# vLLM on 1 GPU(s) per task (the eval resources). Rendered by `cptkit launch eval`.
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

cptkit eval /scratch/cptkit/runs/tiny_cpu --suite ja \
    --backend vllm --model-args tensor_parallel_size=1 \
    --iteration-index "$ARRAY_INDEX"
