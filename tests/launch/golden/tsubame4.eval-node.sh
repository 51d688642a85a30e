#!/bin/bash
#$ -N eval-future_code_ja
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID.$TASK_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -t 1-5
#$ -l node_f=1
#
# cptkit evaluation: suite future_code_ja on 5 checkpoint(s) of /scratch/cptkit/runs/swallowcode_exp1, one array task each
# vLLM on 4 GPU(s) per task (one node). Rendered by `cptkit launch eval`.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$((SGE_TASK_ID - 1))
NUM_TASKS=5
echo "cptkit: eval task $ARRAY_INDEX of $NUM_TASKS, job $JOB_ID on $(hostname)"

# --- software environment (modules)
if ! command -v module >/dev/null 2>&1 && [[ -f /etc/profile.d/modules.sh ]]; then
  source /etc/profile.d/modules.sh
fi
module load cuda/12.1.0 cudnn/9.0.0 nccl/2.20.5 openmpi/5.0.2-gcc
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="tsubame4"
export CPTKIT_JOB_ID="$JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"
export NCCL_IB_TIMEOUT="22"
export NCCL_IB_QPS_PER_CONNECTION="8"
export TORCH_NCCL_AVOID_RECORD_STREAMS="1"
export UB_SKIPMC="1"

cptkit eval /scratch/cptkit/runs/swallowcode_exp1 --suite future_code_ja \
    --backend vllm --model-args tensor_parallel_size=4 \
    --iteration-index "$ARRAY_INDEX"
