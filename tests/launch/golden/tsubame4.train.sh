#!/bin/bash
#$ -N swallowcode_exp1
#$ -cwd
#$ -j y
#$ -o /scratch/cptkit/runs/swallowcode_exp1/logs/jobs/$JOB_NAME.o$JOB_ID
#$ -S /bin/bash
#$ -l h_rt=24:00:00
#$ -l node_f=16
#
# cptkit training job: swallowcode_exp1 (recipes/swallowcode_exp1.yaml) on tsubame4
# 16 node(s) x 4 GPUs = 64 GPUs; TP 2 PP 1 CP 1 DP 32; global batch 512, micro batch 2, 12500 iterations
# Rendered by `cptkit launch train`. Resumes from $RUN_DIR's latest checkpoint; it checkpoints 600 s before the walltime; chained jobs (-hold_jid) resume it.
set -eo pipefail

cd /home/user/cptkit
RUN_DIR=/scratch/cptkit/runs/swallowcode_exp1
NODES=16
GPUS_PER_NODE=4
NUM_GPUS=$((NODES * GPUS_PER_NODE))

# A chained job that starts after the run has finished has nothing to do.
if [[ -f "$RUN_DIR/COMPLETED" ]]; then
  echo "cptkit: $RUN_DIR/COMPLETED exists; nothing to do"
  exit 0
fi
echo "cptkit: job $JOB_ID on $(hostname), resuming from iteration $(cat "$RUN_DIR/checkpoints/latest_checkpointed_iteration.txt" 2>/dev/null || echo 0)"

# --- software environment (modules)
if ! command -v module >/dev/null 2>&1 && [[ -f /etc/profile.d/modules.sh ]]; then
  source /etc/profile.d/modules.sh
fi
module load cuda/12.1.0 cudnn/9.0.0 nccl/2.20.5 openmpi/5.0.2-gcc
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="tsubame4"
export CPTKIT_JOB_ID="$JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"
export NCCL_IB_TIMEOUT="22"
export NCCL_IB_QPS_PER_CONNECTION="8"
export TORCH_NCCL_AVOID_RECORD_STREAMS="1"
export UB_SKIPMC="1"

# --- nodes: one hostfile line per node; rank 0's node is the rendezvous
mkdir -p "$RUN_DIR/launch"
HOSTFILE="$RUN_DIR/launch/hostfile.$JOB_ID"
awk '!seen[$1]++ {print $1}' "$PE_HOSTFILE" > "$HOSTFILE"
if [[ $(wc -l < "$HOSTFILE") -ne $NODES ]]; then
  echo "cptkit: expected $NODES nodes, the scheduler gave $(wc -l < "$HOSTFILE"): $(tr '\n' ' ' < "$HOSTFILE")" >&2
  exit 1
fi
sed -i "s/\$/ slots=$GPUS_PER_NODE/" "$HOSTFILE"
MASTER_ADDR=$(head -n 1 "$HOSTFILE" | cut -d ' ' -f 1)
export MASTER_ADDR
export MASTER_PORT=29500

# --- pre-emption and walltime: the trainer saves a checkpoint on SIGUSR1 and exits 0
SIGNALLED=
checkpoint_and_stop() {
  echo "cptkit: got SIG$1, asking the trainer to save a checkpoint"
  SIGNALLED=$1
  kill -USR1 "$LAUNCH_PID" 2>/dev/null || true  # mpirun forwards SIGUSR1 to every rank
}
trap 'checkpoint_and_stop USR1' USR1
trap 'checkpoint_and_stop TERM' TERM
# Grid Engine kills at the walltime with no warning: signal ourselves 600 s before it.
(sleep 85800 && kill -USR1 $$) 2>/dev/null &
WATCHDOG_PID=$!

# --- train: one process per GPU
mpirun -np "$NUM_GPUS" --npernode "$GPUS_PER_NODE" --hostfile "$HOSTFILE" \
    -x MASTER_ADDR -x MASTER_PORT -x PATH -x LD_LIBRARY_PATH -x CPTKIT_CLUSTER -x CPTKIT_JOB_ID -x CUDA_DEVICE_MAX_CONNECTIONS -x NCCL_IB_TIMEOUT -x NCCL_IB_QPS_PER_CONNECTION -x TORCH_NCCL_AVOID_RECORD_STREAMS -x UB_SKIPMC \
    -bind-to none -map-by slot \
    cptkit train recipes/swallowcode_exp1.yaml &
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
