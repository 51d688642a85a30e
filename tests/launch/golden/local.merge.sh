#!/bin/bash
#
# cptkit tokenization merge: data_mix/swallowcode_exp1.yaml
# Rendered by `cptkit launch tokenize`.
set -eo pipefail

cd /home/user/cptkit
echo "cptkit: merge job local-$$ on $(hostname)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

cptkit tokenize data_mix/swallowcode_exp1.yaml --merge
