#!/bin/bash
#$ -N tiny_cpu
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/runs/tiny_cpu/logs/jobs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=00:10:00
#$ -l node_f=1
#$ -pe mpi 2
#
# cptkit training job: tiny_cpu (recipes/tiny_cpu.yaml) on test-sge
# 1 node(s) x 2 GPUs = 2 GPUs; TP 1 PP 1 CP 1 DP 2; global batch 8, micro batch 2, 30 iterations
# Rendered by `cptkit launch train`. Resumes from $RUN_DIR's latest checkpoint; it checkpoints 30 s before the walltime; chained jobs (-hold_jid) resume it.
set -eo pipefail

cd /home/user/cptkit
RUN_DIR=/scratch/cptkit/runs/tiny_cpu
NODES=1
GPUS_PER_NODE=2
NUM_GPUS=$((NODES * GPUS_PER_NODE))

# A chained job that starts after the run has finished has nothing to do.
if [[ -f "$RUN_DIR/COMPLETED" ]]; then
  echo "cptkit: $RUN_DIR/COMPLETED exists; nothing to do"
  exit 0
fi
echo "cptkit: job $JOB_ID on $(hostname), resuming from iteration $(cat "$RUN_DIR/checkpoints/latest_checkpointed_iteration.txt" 2>/dev/null || echo 0)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="test-sge"
export CPTKIT_JOB_ID="$JOB_ID"
export OMP_NUM_THREADS="1"

# --- nodes: one hostfile line per node; rank 0's node is the rendezvous
mkdir -p "$RUN_DIR/launch"
HOSTFILE="$RUN_DIR/launch/hostfile.$JOB_ID"
awk '!seen[$1]++ {print $1}' "$PE_HOSTFILE" > "$HOSTFILE"
if [[ $(wc -l < "$HOSTFILE") -ne $NODES ]]; then
  echo "cptkit: expected $NODES nodes, the scheduler gave $(wc -l < "$HOSTFILE"): $(tr '\n' ' ' < "$HOSTFILE")" >&2
  exit 1
fi
MASTER_ADDR=$(head -n 1 "$HOSTFILE" | cut -d ' ' -f 1)
export MASTER_ADDR
export MASTER_PORT=29512

# --- pre-emption and walltime: the trainer saves a checkpoint on SIGUSR1 and exits 0
SIGNALLED=
checkpoint_and_stop() {
  echo "cptkit: got SIG$1, asking the trainer to save a checkpoint"
  SIGNALLED=$1
  pkill -USR1 -P "$LAUNCH_PID" || true  # torchrun's workers; torchrun itself ignores SIGUSR1
}
trap 'checkpoint_and_stop USR1' USR1
trap 'checkpoint_and_stop TERM' TERM
# Grid Engine kills at the walltime with no warning: signal ourselves 30 s before it.
(sleep 570 && kill -USR1 $$) 2>/dev/null &
WATCHDOG_PID=$!

# --- train: one process per GPU
(trap '' USR1; exec torchrun --standalone --nnodes=1 --nproc-per-node="$GPUS_PER_NODE" --no-python \
    cptkit train recipes/tiny_cpu.yaml parallel.num_gpus=2) &
LAUNCH_PID=$!
while :; do
  rc=0
  wait "$LAUNCH_PID" || rc=$?
  # wait returns early (> 128) when a trapped signal arrives; keep waiting for the save to finish.
  if (( rc > 128 )) && kill -0 "$LAUNCH_PID" 2>/dev/null; then continue; fi
  break
done
pkill -P "$WATCHDOG_PID" 2>/dev/null || true  # its sleep

if [[ -f "$RUN_DIR/COMPLETED" ]]; then
  echo "cptkit: run complete"
  exit 0
fi
if [[ -n $SIGNALLED ]]; then
  echo "cptkit: checkpoint saved (exit $rc); the next job of the chain resumes"
  exit 0
fi
echo "cptkit: trainer exited with $rc before the run completed" >&2
exit "$rc"
