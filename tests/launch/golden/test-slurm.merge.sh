#!/bin/bash
#SBATCH --job-name=tok-swallowcode_exp1-merge
#SBATCH --output=/scratch/cptkit/logs/%x-%j.out
#SBATCH --time=04:00:00
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#
# cptkit tokenization merge: data_mix/swallowcode_exp1.yaml
# Rendered by `cptkit launch tokenize`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: merge job $SLURM_JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export OMP_NUM_THREADS="1"

cptkit tokenize data_mix/swallowcode_exp1.yaml --merge
