#!/bin/bash
#SBATCH --job-name=tok-swallowcode_exp1
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-15
#SBATCH --partition=dev
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#
# cptkit tokenization: data_mix/swallowcode_exp1.yaml, 16 shard(s), one array task each
# Rendered by `cptkit launch tokenize`; the merge job runs after every shard succeeded.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=16
echo "cptkit: tokenize task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="hyperpod-venv"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export FI_PROVIDER="efa"
export FI_EFA_USE_DEVICE_RDMA="1"
export FI_EFA_FORK_SAFE="1"
export NCCL_SOCKET_IFNAME="^docker,lo,veth"
export CUDA_DEVICE_MAX_CONNECTIONS="1"
export TORCH_NCCL_AVOID_RECORD_STREAMS="1"
export LD_LIBRARY_PATH="/opt/amazon/efa/lib:/opt/amazon/ofi-nccl/lib:/opt/aws-ofi-nccl/lib:${LD_LIBRARY_PATH}"
export CPTKIT_NET_EXPECT="efa"
export CPTKIT_ALLOW_SOCKET="0"

cptkit tokenize data_mix/swallowcode_exp1.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
