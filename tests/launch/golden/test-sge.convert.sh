#!/bin/bash
#$ -N convert-mcore-to-hf
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=02:00:00
#$ -pe mpi 1
#
# cptkit conversion (CPU): convert mcore-to-hf /scratch/cptkit/runs/tiny_cpu/checkpoints/iter_0012500 /scratch/hf/out
# Rendered by `cptkit launch convert`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: convert job $JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

cptkit convert mcore-to-hf /scratch/cptkit/runs/tiny_cpu/checkpoints/iter_0012500 /scratch/hf/out
