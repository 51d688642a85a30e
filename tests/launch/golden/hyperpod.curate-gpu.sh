#!/bin/bash
#SBATCH --job-name=curate-swallowcode
#SBATCH --output=/scratch/cptkit/logs/%x-%A_%a.out
#SBATCH --time=04:00:00
#SBATCH --array=0-63
#SBATCH --partition=dev
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --exclusive
#
# cptkit curation: swallowcode (data_curation/swallowcode.yaml), 64 shard(s), one array task each
# GPU node, LLM engine on 4 GPU(s) per task.
# Stages: sgcr, scor. Output: /scratch/curated/swallowcode
# Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the
# rest); the last task to finish writes curate_stats.{json,md,png}.
set -eo pipefail

cd /home/user/cptkit
ARRAY_INDEX=$SLURM_ARRAY_TASK_ID
NUM_TASKS=64
echo "cptkit: curate task $ARRAY_INDEX of $NUM_TASKS, job $SLURM_JOB_ID on $(hostname)"

# --- software environment (pyxis)
export CPTKIT_CLUSTER="hyperpod"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export FI_PROVIDER="efa"
export FI_EFA_USE_DEVICE_RDMA="1"
export FI_EFA_FORK_SAFE="1"
export NCCL_SOCKET_IFNAME="^docker,lo,veth"
export CUDA_DEVICE_MAX_CONNECTIONS="1"
export TORCH_NCCL_AVOID_RECORD_STREAMS="1"
export CPTKIT_NET_EXPECT="efa"
export CPTKIT_ALLOW_SOCKET="0"

srun --ntasks=1 --container-image=/fsx/images/cptkit.sqsh --container-mounts=/fsx:/fsx env CURATE_ROOT=/scratch/curated MODEL_ROOT=/scratch/models cptkit curate data_curation/swallowcode.yaml \
    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"
