#!/bin/bash
#SBATCH --job-name=convert-mcore-to-hf
#SBATCH --output=/scratch/cptkit/logs/%x-%j.out
#SBATCH --time=02:00:00
#SBATCH --partition=dev
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#
# cptkit conversion (CPU): convert mcore-to-hf /scratch/cptkit/runs/swallowcode_exp1/checkpoints/iter_0012500 /scratch/hf/out
# Rendered by `cptkit launch convert`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: convert job $SLURM_JOB_ID on $(hostname)"

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

srun --ntasks=1 --container-image=/fsx/images/cptkit.sqsh --container-mounts=/fsx:/fsx cptkit convert mcore-to-hf /scratch/cptkit/runs/swallowcode_exp1/checkpoints/iter_0012500 /scratch/hf/out
