"""What differs between SLURM, PBS Pro and Grid Engine: directive prefix, job id, array index, submit and chain.

Only facts about the scheduler live here; site choices (queues, groups, resource names) come from the profile.
Dependencies are given on the submit command line, not in the script, so one rendered script serves every job of a
chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from cptkit.errors import UserError


@dataclass(frozen=True)
class Scheduler:
    name: str
    prefix: str  # directive prefix; "" for local
    job_id: str  # shell expression for this job's id
    array_index: str  # shell expression for the 0-based array index
    submit: str  # submit program

    def header(self, *, job_name: str, log_dir: str, walltime: str | None, array_size: int | None) -> list[str]:
        """The scheduler's generic directives (name, log, walltime, array), without the prefix."""
        array = array_size is not None and array_size > 1
        if self.name == "slurm":
            log = f"{log_dir}/%x-%A_%a.out" if array else f"{log_dir}/%x-%j.out"
            lines = [f"--job-name={job_name}", f"--output={log}"]
            if walltime:
                lines.append(f"--time={walltime}")
            if array:
                lines.append(f"--array=0-{array_size - 1}")
            return lines
        if self.name == "pbs":
            lines = [f"-N {job_name}", "-j oe", f"-o {log_dir}/"]
            if walltime:
                lines.append(f"-l walltime={walltime}")
            if array:
                lines.append(f"-J 0-{array_size - 1}")
            return lines
        if self.name == "sge":
            log = f"{log_dir}/$JOB_NAME.o$JOB_ID" + (".$TASK_ID" if array else "")
            lines = [f"-N {job_name}", "-cwd", "-j y", f"-o {log}", "-S /bin/bash"]
            if walltime:
                lines.append(f"-l h_rt={walltime}")
            if array:
                lines.append(f"-t 1-{array_size}")
            return lines
        return []

    def submit_command(
        self, script: str, *, depends_on: str | None = None, ok: bool = False, extra: list[str] | None = None
    ) -> list[str]:
        """`ok`: start only if the dependency succeeded (Grid Engine's -hold_jid cannot tell; the job must check)."""
        extra = list(extra or [])
        after = "afterok" if ok else "afterany"
        if self.name == "slurm":
            dep = [f"--dependency={after}:{depends_on}"] if depends_on else []
            return ["sbatch", "--parsable", *dep, *extra, script]
        if self.name == "pbs":
            dep = ["-W", f"depend={after}:{depends_on}"] if depends_on else []
            return ["qsub", *dep, *extra, script]
        if self.name == "sge":
            dep = ["-hold_jid", depends_on] if depends_on else []
            return ["qsub", "-terse", *dep, *extra, script]
        return ["bash", script]

    def parse_job_id(self, stdout: str) -> str:
        text = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
        if self.name == "slurm":
            text = text.split(";")[0]  # `--parsable` prints ID or ID;CLUSTER
        elif self.name == "sge":
            text = text.split(".")[0]  # `-terse` prints ID, or ID.1-4:1 for an array
        if not text:
            raise UserError(f"{self.submit} printed no job id (output: {stdout!r})")
        return text


SCHEDULERS = {
    "slurm": Scheduler("slurm", "#SBATCH", "$SLURM_JOB_ID", "$SLURM_ARRAY_TASK_ID", "sbatch"),
    "pbs": Scheduler("pbs", "#PBS", "$PBS_JOBID", "$PBS_ARRAY_INDEX", "qsub"),
    # Grid Engine task ids start at 1.
    "sge": Scheduler("sge", "#$", "$JOB_ID", "$((SGE_TASK_ID - 1))", "qsub"),
    # `local` runs the script with bash on this machine; arrays run one index after another.
    "local": Scheduler("local", "", "local-$$", "${CPTKIT_ARRAY_INDEX:-0}", "bash"),
}


def get(name: str) -> Scheduler:
    return SCHEDULERS[name]
