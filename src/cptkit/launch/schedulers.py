"""One class per scheduler: SLURM, PBS Pro, Grid Engine, and `local` (this machine, no scheduler).

A class holds every fact about its scheduler that cptkit uses: the directive prefix and the generic directives (job
name, log file, walltime, array), the shell expressions for the job id and the 0-based array index, the hostfile of
the allocated nodes, what a training job does after a signalled checkpoint, the submit command with its dependency
syntax, how the job id is read back, and how a job's state is asked for. Nothing else in cptkit branches on the
scheduler's name: render, submit, status and the templates call these methods.

Only facts about the scheduler live here; site choices (queues, groups, resource names) come from the profile.
Dependencies are given on the submit command line, not in the script, so one rendered script serves every job of a
chain. A new scheduler (LSF, Flux, ...) is one subclass here plus its entry in `SCHEDULERS`.

    from cptkit.launch import schedulers
    sched = schedulers.get("pbs")
    sched.submit_command("job.sh", depends_on="123.pbs01")   # ['qsub', '-W', 'depend=afterany:123.pbs01', 'job.sh']
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from cptkit.errors import UserError

_MASTER_FROM_HOSTFILE = "MASTER_ADDR=$(head -n 1 \"$HOSTFILE\" | cut -d ' ' -f 1)\nexport MASTER_ADDR"
_CHAIN_RESUMES = '  echo "cptkit: checkpoint saved (exit $rc); the next job of the chain resumes"'


class Scheduler:
    """A batch scheduler as cptkit sees it. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    title: ClassVar[str]  # as a cluster user writes it, for comments in the scripts
    prefix: ClassVar[str]  # directive prefix ("#SBATCH"); "" when the script has no directives
    job_id: ClassVar[str]  # shell expression for this job's id
    array_index: ClassVar[str]  # shell expression for the 0-based array index
    submit_program: ClassVar[str]
    hostfile_command: ClassVar[str]  # writes one line per allocated node to "$HOSTFILE"
    master_addr: ClassVar[str] = _MASTER_FROM_HOSTFILE  # sets and exports MASTER_ADDR (rank 0's node)
    # Shell lines a training job runs after a signalled checkpoint ($rc, $SIGNALLED set); `{max_requeues}` is filled.
    after_checkpoint: ClassVar[str] = _CHAIN_RESUMES
    warns_before_walltime: ClassVar[bool] = False  # else the script signals itself (a watchdog) before the end
    chains: ClassVar[bool] = True  # can hold a job until another one ends (`--chain K`)
    # A job sees the submitting shell's environment by default (sbatch --export=ALL); PBS and Grid Engine need -V.
    passes_environment: ClassVar[bool] = False
    launchers: ClassVar[frozenset[str]] = frozenset({"mpirun", "torchrun"})

    # -- the script ---------------------------------------------------------------------------------------------------
    def header(self, *, job_name: str, log_dir: str, walltime: str | None, array_size: int | None) -> list[str]:
        """The scheduler's generic directives (name, log, walltime, array), without the prefix."""
        raise NotImplementedError

    def train_directives(self, lead_seconds: int) -> list[str]:
        """Directives only a training job gets (before the profile's resources)."""
        return []

    def resume_note(self, lead_seconds: int) -> str:
        """How a training job resumes, for the script's banner."""
        raise NotImplementedError

    def after_checkpoint_lines(self, max_requeues: int) -> str:
        return self.after_checkpoint.format(max_requeues=max_requeues)

    def watchdog_seconds(self, walltime_seconds: int, lead_seconds: int) -> int | None:
        """When the script signals itself to checkpoint, if the scheduler gives no warning before the walltime."""
        return None if self.warns_before_walltime else walltime_seconds - lead_seconds

    # -- submitting -----------------------------------------------------------------------------------------------
    def dependency(self, job_id: str, *, ok: bool) -> list[str]:
        """Submit arguments that hold a job until `job_id` ended (`ok`: ended successfully)."""
        raise NotImplementedError

    def submit_command(
        self, script: str, *, depends_on: str | None = None, ok: bool = False, extra: list[str] | None = None
    ) -> list[str]:
        """`ok`: start only if the dependency succeeded (Grid Engine's -hold_jid cannot tell; the job must check)."""
        dep = self.dependency(depends_on, ok=ok) if depends_on else []
        return [self.submit_program, *self._submit_flags(), *dep, *(extra or []), script]

    def _submit_flags(self) -> list[str]:
        return []

    def parse_job_id(self, stdout: str) -> str:
        text = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
        text = self._job_id_from_line(text)
        if not text:
            raise UserError(f"{self.submit_program} printed no job id (output: {stdout!r})")
        return text

    def _job_id_from_line(self, line: str) -> str:
        return line

    def submit(self, cmd: list[str], *, kind: str, array_size: int | None, log_dir: Path) -> tuple[str, int | None]:
        """Run the submit command; (job id, exit code if the job already ran, else None)."""
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise UserError(f"{cmd[0]} not found: submit from a login node of this cluster, or use --dry-run") from None
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().replace("\n", " ")
            raise UserError(f"{shlex.join(cmd)} failed (exit {r.returncode}): {msg}")
        return self.parse_job_id(r.stdout), None

    # -- status ---------------------------------------------------------------------------------------------------
    def status_command(self, job_id: str) -> list[str] | None:
        return None

    def parse_status(self, returncode: int, stdout: str) -> str:
        """The state from the status command's result; "" if it cannot tell."""
        return ""

    def query_state(self, job_id: str) -> str:
        """The job's state as the scheduler reports it, or "" if it cannot tell (finished, or no client here)."""
        cmd = self.status_command(job_id)
        if cmd is None or shutil.which(cmd[0]) is None:
            return ""
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        except subprocess.TimeoutExpired:
            return ""
        return self.parse_status(r.returncode, r.stdout)


class Slurm(Scheduler):
    name, title, prefix = "slurm", "SLURM", "#SBATCH"
    job_id, array_index, submit_program = "$SLURM_JOB_ID", "$SLURM_ARRAY_TASK_ID", "sbatch"
    hostfile_command = 'scontrol show hostnames "$SLURM_JOB_NODELIST" > "$HOSTFILE"'
    warns_before_walltime = True  # --signal=B:USR1@lead
    passes_environment = True
    launchers = frozenset({"mpirun", "srun", "torchrun"})
    after_checkpoint = """\
  # USR1 is the walltime warning (--signal): requeue. TERM is scancel or pre-emption, which requeues by itself.
  if [[ $SIGNALLED != USR1 ]]; then
    echo "cptkit: checkpoint saved (exit $rc); stopped by SIGTERM, not requeueing"
  elif (( ${{SLURM_RESTART_COUNT:-0}} < {max_requeues} )); then
    echo "cptkit: checkpoint saved (exit $rc); requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || echo "cptkit: scontrol requeue failed; resubmit to continue" >&2
  else
    echo "cptkit: checkpoint saved (exit $rc); requeued {max_requeues} times already, not again" >&2
  fi"""

    def header(self, *, job_name, log_dir, walltime, array_size):
        array = array_size is not None and array_size > 1
        lines = [
            f"--job-name={job_name}",
            f"--output={log_dir}/%x-%A_%a.out" if array else f"--output={log_dir}/%x-%j.out",
        ]
        if walltime:
            lines.append(f"--time={walltime}")
        if array:
            lines.append(f"--array=0-{array_size - 1}")
        return lines

    def train_directives(self, lead_seconds):
        # The batch shell gets USR1 `lead` s before the walltime, checkpoints and requeues the same job.
        return [f"--signal=B:USR1@{lead_seconds}", "--requeue", "--open-mode=append"]

    def resume_note(self, lead_seconds):
        return f"on pre-emption or {lead_seconds} s before the walltime it checkpoints and requeues itself"

    def dependency(self, job_id, *, ok):
        return [f"--dependency={'afterok' if ok else 'afterany'}:{job_id}"]

    def _submit_flags(self):
        return ["--parsable"]

    def _job_id_from_line(self, line):
        return line.split(";")[0]  # `--parsable` prints ID or ID;CLUSTER

    def status_command(self, job_id):
        return ["squeue", "-h", "-j", job_id, "-o", "%T"]

    def parse_status(self, returncode, stdout):
        if returncode != 0:  # squeue forgets a job soon after it ended
            return "finished"
        return stdout.strip().lower() or "finished"


class PbsPro(Scheduler):
    name, title, prefix = "pbs", "PBS Pro", "#PBS"
    job_id, array_index, submit_program = "$PBS_JOBID", "$PBS_ARRAY_INDEX", "qsub"
    hostfile_command = 'sort -u "$PBS_NODEFILE" > "$HOSTFILE"'

    def header(self, *, job_name, log_dir, walltime, array_size):
        lines = [f"-N {job_name}", "-j oe", f"-o {log_dir}/"]
        if walltime:
            lines.append(f"-l walltime={walltime}")
        if array_size is not None and array_size > 1:
            lines.append(f"-J 0-{array_size - 1}")
        return lines

    def resume_note(self, lead_seconds):
        return f"it checkpoints {lead_seconds} s before the walltime; chained jobs (-W depend=afterany) resume it"

    def dependency(self, job_id, *, ok):
        return ["-W", f"depend={'afterok' if ok else 'afterany'}:{job_id}"]

    def status_command(self, job_id):
        return ["qstat", "-x", "-f", "-F", "json", job_id]

    def parse_status(self, returncode, stdout):
        if returncode != 0:
            return ""
        try:
            jobs = json.loads(stdout)["Jobs"]
            return next(iter(jobs.values()))["job_state"]
        except (ValueError, KeyError, StopIteration):
            return ""


class GridEngine(Scheduler):
    name, title, prefix = "sge", "Grid Engine", "#$"
    # Grid Engine task ids start at 1.
    job_id, array_index, submit_program = "$JOB_ID", "$((SGE_TASK_ID - 1))", "qsub"
    hostfile_command = 'awk \'!seen[$1]++ {print $1}\' "$PE_HOSTFILE" > "$HOSTFILE"'

    def header(self, *, job_name, log_dir, walltime, array_size):
        array = array_size is not None and array_size > 1
        log = f"{log_dir}/$JOB_NAME.o$JOB_ID" + (".$TASK_ID" if array else "")
        lines = [f"-N {job_name}", "-cwd", "-j y", f"-o {log}", "-S /bin/bash"]
        if walltime:
            lines.append(f"-l h_rt={walltime}")
        if array:
            lines.append(f"-t 1-{array_size}")
        return lines

    def resume_note(self, lead_seconds):
        return f"it checkpoints {lead_seconds} s before the walltime; chained jobs (-hold_jid) resume it"

    def dependency(self, job_id, *, ok):
        return ["-hold_jid", job_id]  # no "after ok" in Grid Engine: a merge job checks its inputs itself

    def _submit_flags(self):
        return ["-terse"]

    def _job_id_from_line(self, line):
        return line.split(".")[0]  # `-terse` prints ID, or ID.1-4:1 for an array

    def status_command(self, job_id):
        return ["qstat", "-j", job_id]

    def parse_status(self, returncode, stdout):
        return "queued/running" if returncode == 0 else "finished"


class Local(Scheduler):
    """No scheduler: `bash SCRIPT` on this machine, now, in the foreground; arrays run one index after another."""

    name, title, prefix = "local", "local", ""
    job_id, array_index, submit_program = "local-$$", "${CPTKIT_ARRAY_INDEX:-0}", "bash"
    hostfile_command = 'hostname > "$HOSTFILE"'
    master_addr = "export MASTER_ADDR=127.0.0.1"
    after_checkpoint = '  echo "cptkit: checkpoint saved (exit $rc); run the script again to resume"'
    warns_before_walltime = True  # no walltime: only SIGUSR1/SIGTERM from the user
    chains = False
    passes_environment = True  # the script runs in this shell's environment
    launchers = frozenset({"torchrun"})

    def header(self, *, job_name, log_dir, walltime, array_size):
        return []

    def resume_note(self, lead_seconds):
        return "on SIGUSR1/SIGTERM it checkpoints; run it again to resume"

    def dependency(self, job_id, *, ok):
        return []  # jobs run one after another anyway

    def submit_command(self, script, *, depends_on=None, ok=False, extra=None):
        return ["bash", script]

    def submit(self, cmd, *, kind, array_size, log_dir):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        job_id = f"local-{os.getpid()}-{stamp}-{kind}"
        rc = 0
        for index in range(array_size or 1):
            env = {**os.environ, "CPTKIT_ARRAY_INDEX": str(index)}
            with open(log_dir / f"{job_id}.{index}.out", "w", encoding="utf-8") as log:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
            if rc != 0:
                raise UserError(f"local {kind} job failed (exit {rc}); see {log.name}")
        return job_id, rc


SCHEDULERS: dict[str, Scheduler] = {s.name: s for s in (Slurm(), PbsPro(), GridEngine(), Local())}


def get(name: str) -> Scheduler:
    return SCHEDULERS[name]
