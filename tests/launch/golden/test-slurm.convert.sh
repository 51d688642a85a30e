#!/bin/bash
#SBATCH --job-name=convert-mcore-to-hf
#SBATCH --output=/scratch/cptkit/logs/%x-%j.out
#SBATCH --time=02:00:00
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#
# cptkit conversion (CPU): convert mcore-to-hf /scratch/cptkit/runs/tiny_cpu/checkpoints/iter_0012500 /scratch/hf/out
# Rendered by `cptkit launch convert`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: convert job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export OMP_NUM_THREADS="1"

cptkit convert mcore-to-hf /scratch/cptkit/runs/tiny_cpu/checkpoints/iter_0012500 /scratch/hf/out
