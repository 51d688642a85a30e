"""Publish release folders on the Hugging Face Hub through `huggingface_hub` (`create_repo`, `create_branch`,
`upload_folder`), or list exactly what would be sent (`dry_run`, no network).

Two layouts (`plan_uploads`): one repository per checkpoint, named after its release folder (the seeds' way:
`ORG/Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1-iter0012500`), or one repository per run with a
branch per checkpoint (`ORG/Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1`, revision `iter_0012500`).

The token is huggingface_hub's: `HF_TOKEN`, else the file `hf auth login` (formerly `huggingface-cli login`)
writes under `HF_HOME`. `HF_ENDPOINT` selects another Hub. Every failure a user can cause or meet (bad repo id or
branch name, no token, no network, a refused token) is a one-line `UserError`.

Push folders that are already released (e.g. from a login node, when compute nodes have no internet):

    python -m cptkit.release.push runs/X/release/* --push my-org --dry-run
    python -m cptkit.release.push runs/X/release/* --push my-org --layout revision-per-checkpoint --private
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from cptkit.errors import UserError

LAYOUTS = ("repo-per-checkpoint", "revision-per-checkpoint")
# Never published: hidden files and directories (atomic-write temporaries `.NAME.XXXX.tmp`, `.cache/`, editor
# files), and half-written files of other tools. huggingface_hub adds its own DEFAULT_IGNORE_PATTERNS (.git,
# .cache/huggingface) to these; `upload_list` applies both, so a dry run lists what `upload_folder` sends.
IGNORE_PATTERNS = (".*", "*/.*", "*.tmp", "*.tmp-*", "*.partial", "*.partial-*", "*/__pycache__/*")
_ITER_SUFFIX = re.compile(r"^(?P<stem>.+)-iter(?P<iteration>\d+)$")


def upload_list(folder: Path) -> list[str]:
    """The files (POSIX paths relative to `folder`) `upload_folder(folder, ignore_patterns=IGNORE_PATTERNS)` sends,
    selected by huggingface_hub's own filter, in its order."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    root = Path(folder).expanduser().resolve()
    files = [p.relative_to(root).as_posix() for p in sorted(root.glob("**/*")) if p.is_file()]
    return list(filter_repo_objects(files, ignore_patterns=[*IGNORE_PATTERNS, *DEFAULT_IGNORE_PATTERNS]))


HUB_ENV = ("HF_ENDPOINT", "HF_HOME", "HF_TOKEN_PATH")  # where the Hub and the token file are; not secret


def token_file() -> Path:
    """The token file `hf auth login` writes, by huggingface_hub's rule, from the environment as it is now."""
    if os.environ.get("HF_TOKEN_PATH"):
        return Path(os.path.expandvars(os.environ["HF_TOKEN_PATH"])).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "token"


def token_source() -> str | None:
    """Where a push here would take its token from: "env" (HF_TOKEN), "file" (the login's token file) or None."""
    if os.environ.get("HF_TOKEN", "").strip() or os.environ.get("HUGGING_FACE_HUB_TOKEN", "").strip():
        return "env"
    try:
        return "file" if token_file().read_text().strip() else None
    except OSError:
        return None


def check_repo_id(repo_id: str, field: str = "--push") -> None:
    """ORG/NAME as the Hub accepts it (huggingface_hub's validation: 1-96 characters of [A-Za-z0-9-_.], no `--` or
    `..`, not ending in `.git`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise UserError(
            f"repository {repo_id!r} must be ORG/NAME (an organization or user, then the name)", field=field
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UserError(f"invalid Hub repository id: {e}", field=field) from None


def check_revision(revision: str, field: str = "revision") -> None:
    """A branch name git (and so the Hub) accepts: the rules of `git check-ref-format --branch`."""
    bad = None
    if not revision or revision == "@":
        bad = "it is empty" if not revision else "'@' alone is not a name"
    elif re.search(r"[\x00-\x20\x7f~^:?*\[\\]", revision):
        bad = "spaces, control characters and ~ ^ : ? * [ \\ are not allowed"
    elif ".." in revision or "@{" in revision or "//" in revision:
        bad = "'..', '@{' and '//' are not allowed"
    elif revision.startswith(("-", "/")) or revision.endswith(("/", ".", ".lock")):
        bad = "it may not start with '-' or '/', or end with '/', '.' or '.lock'"
    elif any(part.startswith(".") for part in revision.split("/")):
        bad = "no part may start with '.'"
    if bad:
        raise UserError(f"invalid branch name {revision!r}: {bad}", field=field)


def plan_uploads(
    release_dirs: Iterable[str | Path], org: str, layout: str = "repo-per-checkpoint"
) -> list[tuple[Path, str, str | None]]:
    """(folder, repo_id, revision) per release folder, sorted by folder name, every id and branch checked.

    `org` is `ORG` (repositories named after the folders) or `ORG/NAME` (one named repository: a single
    checkpoint, or the repository of `revision-per-checkpoint`). With `revision-per-checkpoint` each folder's name
    must end in `-iterNNNNNNN` (the default release name does); its branch is `iter_NNNNNNN`."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}", field="layout")
    dirs = sorted({Path(d) for d in release_dirs}, key=lambda p: p.name)
    if not dirs:
        raise UserError("no release folders to push", field="--push")
    if org.count("/") > 1 or not org.strip("/"):
        raise UserError(f"{org!r}: give ORG or ORG/NAME", field="--push")
    named = "/" in org
    plan: list[tuple[Path, str, str | None]] = []
    if layout == "repo-per-checkpoint":
        # The release name is the folder's and the repository's (issue #18): ORG/NAME may only repeat it.
        for d in dirs:
            if named and org.split("/")[1] != d.name:
                raise UserError(
                    f"one repository per checkpoint is named by its release folder ({d.name!r}), not "
                    f"{org.split('/')[1]!r}: give --push ORG, or the revision-per-checkpoint layout for one repository "
                    "ORG/NAME with a branch per checkpoint",
                    field="--push",
                )
        plan = [(d, f"{org.split('/')[0]}/{d.name}", None) for d in dirs]
    else:
        for d in dirs:
            m = _ITER_SUFFIX.match(d.name)
            if m is None:
                raise UserError(
                    "cannot tell the checkpoint of this release folder (its name does not end in -iterNNNNNNN), "
                    "so it gets no branch; use the repo-per-checkpoint layout",
                    file=d,
                )
            plan.append((d, org if named else f"{org}/{m['stem']}", f"iter_{int(m['iteration']):07d}"))
        revisions = [rev for _, _, rev in plan]
        if len(set(revisions)) != len(revisions):
            raise UserError(f"two release folders are the same checkpoint: {revisions}", field="--push")
    for _, repo_id, revision in plan:
        check_repo_id(repo_id)
        if revision is not None:
            check_revision(revision)
    return plan


def push(
    folder: Path, repo_id: str, *, revision: str | None, private: bool, dry_run: bool, create_pr: bool = False
) -> list[str]:
    """Upload `folder` to `repo_id` (created if missing, `private` if created now) on branch `revision` (created
    from main if missing; None = main). Returns the relative paths sent — or, with `dry_run`, that would be sent,
    without touching the network. Prints nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("not a release folder (no such directory)", file=folder)
    check_repo_id(repo_id)
    if revision is not None:
        check_revision(revision)
    if create_pr and revision not in (None, "main"):
        raise UserError("a pull request is opened against main; it cannot go to a branch", field="revision")
    files = upload_list(folder)
    if not files:
        raise UserError("nothing to upload (the folder holds no files that are published)", file=folder)
    if dry_run:
        return files

    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN, or log in once with `hf auth login` (`huggingface-cli login` "
            "in older huggingface_hub), which writes the token file under HF_HOME",
            field="--push",
        )
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or None  # read now, not at huggingface_hub's import
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(endpoint, repo_id):
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            revision=revision,
            create_pr=create_pr,
            ignore_patterns=list(IGNORE_PATTERNS),
            commit_message=f"Upload {folder.name} with cptkit",
        )
    return files


@contextlib.contextmanager
def hub_errors(endpoint: str | None, repo_id: str) -> Iterator[None]:
    """huggingface_hub's and httpx's exceptions as one line each."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    host = urlparse(endpoint).netloc if endpoint else "huggingface.co"
    try:
        yield
    except OfflineModeIsEnabled:
        raise UserError("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: unset it to push", field="--push") from None
    except _transport_errors() as e:  # refused, no route, DNS failure, timeout
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"cannot reach {host}: {reason}", field="--push") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if status == 401:
            raise UserError(
                f"{host} refused the token (401): log in again (`hf auth login`) or check HF_TOKEN"
            ) from None
        if status == 403:
            raise UserError(
                f"the token may not write to {repo_id} (403): it needs write access to its namespace"
            ) from None
        raise UserError(f"{host}: {first}", field="--push") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures: httpx's (huggingface_hub 1.x) and requests' (0.x, where they are not OSErrors)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import httpx

        errors.append(httpx.TransportError)
    with contextlib.suppress(ImportError):
        import requests

        errors += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    return tuple(errors)


def format_upload(folder: Path, repo_id: str, revision: str | None, files: Sequence[str], *, dry_run: bool) -> str:
    """What a CLI prints for one upload: the target, then one file per line with its size."""
    where = f"{repo_id}" + (f" (branch {revision})" if revision else "")
    head = f"{'would upload' if dry_run else 'uploaded'} {folder} -> {where}: {len(files)} file(s)"
    root = Path(folder)
    return "\n".join([head, *(f"  {f}  {_size(root / f)}" for f in files)])


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def main(argv: list[str] | None = None) -> int:
    from cptkit.cli import os_error_line

    p = argparse.ArgumentParser(prog="python -m cptkit.release.push", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", metavar="RELEASE_DIR", help="release folders (`cptkit release` output)")
    p.add_argument("--push", required=True, metavar="ORG[/NAME]", help="namespace, or one repository")
    p.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0], help="default: %(default)s (the seeds' way)")
    p.add_argument("--private", action="store_true", help="create new repositories private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; no network")
    args = p.parse_args(argv)
    try:
        for folder, repo_id, revision in plan_uploads(args.folders, args.push, args.layout):
            files = push(folder, repo_id, revision=revision, private=args.private, dry_run=args.dry_run)
            print(format_upload(folder, repo_id, revision, files, dry_run=args.dry_run))
    except UserError as e:
        print(f"{p.prog}: error: {e.one_line()}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{p.prog}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
