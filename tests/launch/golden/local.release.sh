#!/bin/bash
#
# cptkit release (CPU): every evaluated checkpoint of /scratch/cptkit/runs/tiny_cpu -> /scratch/cptkit/runs/tiny_cpu/release
# Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.
# Then uploads each to the Hub under tokyotech-llm (a repository per checkpoint).
# Rendered by `cptkit launch release`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: release job local-$$ on $(hostname)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

cptkit release /scratch/cptkit/runs/tiny_cpu --every-eval --push tokyotech-llm
