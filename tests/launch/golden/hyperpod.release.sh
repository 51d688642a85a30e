#!/bin/bash
#SBATCH --job-name=release-swallowcode_exp1
#SBATCH --output=/scratch/cptkit/logs/%x-%j.out
#SBATCH --time=04:00:00
#SBATCH --partition=dev
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#
# cptkit release (CPU): every evaluated checkpoint of /scratch/cptkit/runs/swallowcode_exp1 -> /scratch/cptkit/runs/swallowcode_exp1/release
# Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.
# Then uploads each to the Hub under tokyotech-llm (a repository per checkpoint).
# Rendered by `cptkit launch release`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: release job $SLURM_JOB_ID on $(hostname)"

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

srun --ntasks=1 --container-image=/fsx/images/cptkit.sqsh --container-mounts=/fsx:/fsx cptkit release /scratch/cptkit/runs/swallowcode_exp1 --every-eval --push tokyotech-llm
