#!/bin/bash
#SBATCH --job-name=eval-future_code_ja
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-4
#SBATCH --partition=gpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#
# cptkit evaluation: suite future_code_ja on 5 checkpoint(s) of /scratch/cptkit/runs/swallowcode_exp1, one array task each
# vLLM on 8 GPU(s) per task (one node). Rendered by `cptkit launch eval`.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=5
echo "cptkit: eval task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"

cptkit eval /scratch/cptkit/runs/swallowcode_exp1 --suite future_code_ja \
    --backend vllm --model-args tensor_parallel_size=8 \
    --iteration-index "$ARRAY_INDEX"
