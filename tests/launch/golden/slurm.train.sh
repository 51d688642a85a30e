#!/bin/bash
#SBATCH --job-name=swallowcode_exp1
#SBATCH --output=/scratch/cptkit/runs/swallowcode_exp1/logs/jobs/%x-%j.out
#SBATCH --time=48:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --partition=gpu
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#
# cptkit training job: swallowcode_exp1 (recipes/swallowcode_exp1.yaml) on slurm
# 8 node(s) x 8 GPUs = 64 GPUs; TP 2 PP 1 CP 1 DP 32; global batch 512, micro batch 2, 12500 iterations
# Rendered by `cptkit launch train`. Resumes from $RUN_DIR's latest checkpoint; on pre-emption or 300 s before the walltime it checkpoints and requeues itself.
set -eo pipefail

cd /home/user/cptkit
RUN_DIR=/scratch/cptkit/runs/swallowcode_exp1
NODES=8
GPUS_PER_NODE=8
NUM_GPUS=$((NODES * GPUS_PER_NODE))

# A chained job that starts after the run has finished has nothing to do.
if [[ -f "$RUN_DIR/COMPLETED" ]]; then
  echo "cptkit: $RUN_DIR/COMPLETED exists; nothing to do"
  exit 0
fi
echo "cptkit: job $SLURM_JOB_ID on $(hostname), resuming from iteration $(cat "$RUN_DIR/checkpoints/latest_checkpointed_iteration.txt" 2>/dev/null || echo 0)"

# --- software environment (venv)
source /home/user/cptkit/.venv/bin/activate
export CPTKIT_CLUSTER="slurm"
export CPTKIT_JOB_ID="$SLURM_JOB_ID"
export CUDA_DEVICE_MAX_CONNECTIONS="1"

# --- nodes: one hostfile line per node; rank 0's node is the rendezvous
mkdir -p "$RUN_DIR/launch"
HOSTFILE="$RUN_DIR/launch/hostfile.$SLURM_JOB_ID"
scontrol show hostnames "$SLURM_JOB_NODELIST" > "$HOSTFILE"
if [[ $(wc -l < "$HOSTFILE") -ne $NODES ]]; then
  echo "cptkit: expected $NODES nodes, the scheduler gave $(wc -l < "$HOSTFILE"): $(tr '\n' ' ' < "$HOSTFILE")" >&2
  exit 1
fi
MASTER_ADDR=$(head -n 1 "$HOSTFILE" | cut -d ' ' -f 1)
export MASTER_ADDR
export MASTER_PORT=29500

# --- pre-emption and walltime: the trainer saves a checkpoint on SIGUSR1 and exits 0
SIGNALLED=
checkpoint_and_stop() {
  echo "cptkit: got SIG$1, asking the trainer to save a checkpoint"
  SIGNALLED=$1
  kill -USR1 "$LAUNCH_PID" 2>/dev/null || true  # srun forwards SIGUSR1 to every rank
}
trap 'checkpoint_and_stop USR1' USR1
trap 'checkpoint_and_stop TERM' TERM

# --- train: one process per GPU
srun --ntasks="$NUM_GPUS" --ntasks-per-node="$GPUS_PER_NODE" --kill-on-bad-exit=1 \
    bash -c 'export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS; exec "$@"' rank \
    cptkit train recipes/swallowcode_exp1.yaml &
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
  # USR1 is the walltime warning (--signal): requeue. TERM is scancel or pre-emption, which requeues by itself.
  if [[ $SIGNALLED != USR1 ]]; then
    echo "cptkit: checkpoint saved (exit $rc); stopped by SIGTERM, not requeueing"
  elif (( ${SLURM_RESTART_COUNT:-0} < 20 )); then
    echo "cptkit: checkpoint saved (exit $rc); requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || echo "cptkit: scontrol requeue failed; resubmit to continue" >&2
  else
    echo "cptkit: checkpoint saved (exit $rc); requeued 20 times already, not again" >&2
  fi
  exit 0
fi
echo "cptkit: trainer exited with $rc before the run completed" >&2
exit "$rc"
