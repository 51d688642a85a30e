#!/bin/bash
#
# cptkit conversion (CPU): convert mcore-to-hf /scratch/cptkit/runs/tiny_cpu/checkpoints/iter_0012500 /scratch/hf/out
# Rendered by `cptkit launch convert`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: convert job local-$$ on $(hostname)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

cptkit convert mcore-to-hf /scratch/cptkit/runs/tiny_cpu/checkpoints/iter_0012500 /scratch/hf/out
