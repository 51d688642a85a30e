#!/bin/bash
#
# cptkit training job: tiny_cpu (recipes/tiny_cpu.yaml) on local
# 1 node(s) x 1 GPUs = 1 GPUs; TP 1 PP 1 CP 1 DP 1; global batch 8, micro batch 2, 30 iterations
# Rendered by `cptkit launch train`. Resumes from $RUN_DIR's latest checkpoint; on SIGUSR1/SIGTERM it checkpoints; run it again to resume.
set -eo pipefail

cd /home/user/cptkit
RUN_DIR=/scratch/cptkit/runs/tiny_cpu
NODES=1
GPUS_PER_NODE=1
NUM_GPUS=$((NODES * GPUS_PER_NODE))

# A chained job that starts after the run has finished has nothing to do.
if [[ -f "$RUN_DIR/COMPLETED" ]]; then
  echo "cptkit: $RUN_DIR/COMPLETED exists; nothing to do"
  exit 0
fi
echo "cptkit: job local-$$ on $(hostname), resuming from iteration $(cat "$RUN_DIR/checkpoints/latest_checkpointed_iteration.txt" 2>/dev/null || echo 0)"

# --- software environment (none)
export CPTKIT_CLUSTER="local"
export CPTKIT_JOB_ID="local-$$"
export OMP_NUM_THREADS="1"

# --- nodes: one hostfile line per node; rank 0's node is the rendezvous
mkdir -p "$RUN_DIR/launch"
HOSTFILE="$RUN_DIR/launch/hostfile.local-$$"
hostname > "$HOSTFILE"
if [[ $(wc -l < "$HOSTFILE") -ne $NODES ]]; then
  echo "cptkit: expected $NODES nodes, the scheduler gave $(wc -l < "$HOSTFILE"): $(tr '\n' ' ' < "$HOSTFILE")" >&2
  exit 1
fi
export MASTER_ADDR=127.0.0.1
export MASTER_PORT=29500

# --- pre-emption and walltime: the trainer saves a checkpoint on SIGUSR1 and exits 0
SIGNALLED=
checkpoint_and_stop() {
  echo "cptkit: got SIG$1, asking the trainer to save a checkpoint"
  SIGNALLED=$1
  pkill -USR1 -P "$LAUNCH_PID" || true  # torchrun's workers; torchrun itself ignores SIGUSR1
}
trap 'checkpoint_and_stop USR1' USR1
trap 'checkpoint_and_stop TERM' TERM

# --- train: one process per GPU
(trap '' USR1; exec torchrun --standalone --nnodes=1 --nproc-per-node="$GPUS_PER_NODE" --no-python \
    cptkit train recipes/tiny_cpu.yaml) &
LAUNCH_PID=$!
while :; do
  rc=0
  wait "$LAUNCH_PID" || rc=$?
  # wait returns early (> 128) when a trapped signal arrives; keep waiting for the save to finish.
  if (( rc > 128 )) && kill -0 "$LAUNCH_PID" 2>/dev/null; then continue; fi
  break
done

if [[ -f "$RUN_DIR/COMPLETED" ]]; then
  echo "cptkit: run complete"
  exit 0
fi
if [[ -n $SIGNALLED ]]; then
  echo "cptkit: checkpoint saved (exit $rc); run the script again to resume"
  exit 0
fi
echo "cptkit: trainer exited with $rc before the run completed" >&2
exit "$rc"
