#!/bin/bash
#SBATCH --job-name=release-swallowcode_exp1
#SBATCH --output=/scratch/cptkit/logs/%x-%j.out
#SBATCH --time=04:00:00
#SBATCH --partition=gpu
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#
# cptkit release (CPU): every evaluated checkpoint of /scratch/cptkit/runs/swallowcode_exp1 -> /scratch/cptkit/runs/swallowcode_exp1/release
# Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.
# Then uploads each to the Hub under tokyotech-llm (a repository per checkpoint).
# Rendered by `cptkit launch release`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: release job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"

cptkit release /scratch/cptkit/runs/swallowcode_exp1 --every-eval --push tokyotech-llm
