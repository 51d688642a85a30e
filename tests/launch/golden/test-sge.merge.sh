#!/bin/bash
#$ -N tok-swallowcode_exp1-merge
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/logs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=04:00:00
#$ -pe mpi 1
#
# cptkit tokenization merge: data_mix/swallowcode_exp1.yaml
# Rendered by `cptkit launch tokenize`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: merge job $JOB_ID on $(hostname)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

cptkit tokenize data_mix/swallowcode_exp1.yaml --merge
