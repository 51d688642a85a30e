#!/bin/bash
#SBATCH --job-name=curate-swallowcode_exp3
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-63
#SBATCH --partition=dev
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#
# cptkit curation: swallowcode_exp3 (data_curation/swallowcode_exp3.yaml), 64 shard(s), one array task each
# CPU resources (no LLM stage).
# Stages: syntax, pylint. Output: /scratch/curated/swallowcode_exp3
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

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

env CURATE_ROOT=/scratch/curated RAW_ROOT=/scratch/raw cptkit curate data_curation/swallowcode_exp3.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
