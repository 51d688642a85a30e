#!/bin/bash
#$ -N release-tiny_cpu
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -pe mpi 1
#
# cptkit release (CPU): every evaluated checkpoint of /scratch/cptkit/runs/tiny_cpu -> /scratch/cptkit/runs/tiny_cpu/release
# Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.
# Then uploads each to the Hub under tokyotech-llm (a repository per checkpoint).
# Rendered by `cptkit launch release`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: release job $JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

cptkit release /scratch/cptkit/runs/tiny_cpu --every-eval --push tokyotech-llm
