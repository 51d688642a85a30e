"""`cptkit.release.push`: the dry-run list is what `upload_folder` sends, the Hub calls per layout (a fake Hub:
huggingface_hub's HfApi methods recorded), the one-line errors, and no network as exit code 2.

    .venv/bin/python -m pytest -q tests/release/test_push.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from exp1_release import EXP1_NAME, STRAYS, dry_run_text, make_exp1_release
from huggingface_hub import HfApi

from cptkit.errors import UserError
from cptkit.release import push as push_mod
from cptkit.release.push import IGNORE_PATTERNS, check_revision, plan_uploads, push

ROOT = Path(__file__).resolve().parents[2]
STEM = "Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1"
PUBLISHED = ["README.md", "config.json", "model-00001-of-00001.safetensors", "model.safetensors.index.json",
             "original/params.json", "tokenizer.json"]  # fmt: skip
NOT_PUBLISHED = [".README.md.abc123.tmp", ".cache/huggingface/upload/x.lock", ".git/HEAD", "original/.params.json.tmp",
                 "tokenizer.json.tmp", ".DS_Store", "sub/__pycache__/x.pyc"]  # fmt: skip


def release_folder(root: Path, name: str = f"{STEM}-iter0012500") -> Path:
    folder = root / name
    for rel in PUBLISHED + NOT_PUBLISHED:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("---\nlicense: llama3.1\n---\n# card\n" if rel == "README.md" else rel)
    return folder


@pytest.fixture
def token(monkeypatch, tmp_path):
    """A token in HF_TOKEN, no token file, the default endpoint."""
    for var in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")


@pytest.fixture
def hub(monkeypatch, token):
    """A fake Hub: HfApi's create_repo / create_branch / upload_folder record their arguments and do nothing."""
    calls: list[tuple[str, dict]] = []

    def recorder(method):
        def record(self, *args, **kwargs):
            calls.append((method, {"args": args, **kwargs, "endpoint": self.endpoint, "token": self.token}))

        return record

    for method in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, method, recorder(method))
    return calls


def test_dry_run_lists_exactly_what_upload_folder_sends(tmp_path, monkeypatch, token):
    """The real `upload_folder` runs up to its commit (recorded there, no network): it sends the dry-run list."""
    folder = release_folder(tmp_path)
    listed = push(folder, "org/x", revision=None, private=False, dry_run=True)
    assert listed == PUBLISHED

    sent: list[list[str]] = []

    def commit(*args, **kwargs):  # both of upload_folder's paths end here: the streamed pipeline, or one commit
        ops = kwargs.get("add_operations") or kwargs.get("operations")
        sent.append([op.path_in_repo for op in ops])

    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: None)
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda *a, **k: None)  # a call to the Hub's YAML validator
    monkeypatch.setattr(HfApi, "create_commit", commit)
    monkeypatch.setattr("huggingface_hub._upload_pipeline.pipelined_upload", commit)
    assert push(folder, "org/x", revision=None, private=False, dry_run=False) == listed
    assert sent == [listed]
    # Not blind: the folder does hold the strays, and upload_folder without cptkit's patterns would send some.
    everything = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert set(everything) - set(listed) == set(NOT_PUBLISHED)
    monkeypatch.setattr(push_mod, "IGNORE_PATTERNS", ())
    push(folder, "org/x", revision=None, private=False, dry_run=False)
    assert sent[-1] != listed and "tokenizer.json.tmp" in sent[-1]


def test_repo_per_checkpoint_calls(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org/")  # read at the call, not at import
    folders = [release_folder(tmp_path, f"{STEM}-iter{i:07d}") for i in (12500, 2500)]
    plan = plan_uploads(folders, "tokyotech-llm")
    assert plan == [(folders[1], f"tokyotech-llm/{STEM}-iter0002500", None),
                    (folders[0], f"tokyotech-llm/{STEM}-iter0012500", None)]  # fmt: skip
    for folder, repo_id, revision in plan:
        assert push(folder, repo_id, revision=revision, private=True, dry_run=False) == PUBLISHED
    assert [m for m, _ in hub] == ["create_repo", "upload_folder"] * 2  # no branch: everything on main
    create, upload = hub[0][1], hub[1][1]
    assert create["args"] == (f"tokyotech-llm/{STEM}-iter0002500",)
    assert create["private"] is True and create["exist_ok"] is True and create["repo_type"] == "model"
    assert create["endpoint"] == "https://hub.example.org" and create["token"] == "hf_test_token"
    assert upload["repo_id"] == f"tokyotech-llm/{STEM}-iter0002500" and upload["folder_path"] == folders[1]
    assert upload["revision"] is None and upload["create_pr"] is False
    assert upload["ignore_patterns"] == list(IGNORE_PATTERNS)


def test_revision_per_checkpoint_calls(tmp_path, hub):
    folders = [release_folder(tmp_path, f"{STEM}-iter{i:07d}") for i in (2500, 12500)]
    plan = plan_uploads(folders, "tokyotech-llm", "revision-per-checkpoint")
    assert plan == [(folders[0], f"tokyotech-llm/{STEM}", "iter_0002500"),
                    (folders[1], f"tokyotech-llm/{STEM}", "iter_0012500")]  # fmt: skip
    # ORG/NAME names the one repository of the run.
    assert {r for _, r, _ in plan_uploads(folders, "me/exp1", "revision-per-checkpoint")} == {"me/exp1"}
    for folder, repo_id, revision in plan:
        push(folder, repo_id, revision=revision, private=False, dry_run=False)
    assert [m for m, _ in hub] == ["create_repo", "create_branch", "upload_folder"] * 2
    branch, upload = hub[4][1], hub[5][1]
    assert branch["args"] == (f"tokyotech-llm/{STEM}",) and branch["branch"] == "iter_0012500"
    assert branch["exist_ok"] is True and hub[3][1]["private"] is False
    assert upload["revision"] == "iter_0012500" and upload["folder_path"] == folders[1]


def test_dry_run_never_touches_the_network(tmp_path, monkeypatch):
    """No token needed, and any HfApi call would fail the test."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for method in ("create_repo", "create_branch", "upload_folder", "__init__"):
        monkeypatch.setattr(HfApi, method, lambda *a, **k: pytest.fail("dry run used HfApi"))
    assert push(release_folder(tmp_path), "org/x", revision="iter_0000010", private=True, dry_run=True) == PUBLISHED


@pytest.mark.parametrize(
    ("org", "layout", "names", "message"),
    [
        ("org", "repo-per-checkpoint", ["a--b-iter0000001"], "--push: invalid Hub repository id: Cannot have -- or .."),
        ("org", "repo-per-checkpoint", ["x" * 97], "--push: invalid Hub repository id"),
        ("a/b/c", "repo-per-checkpoint", ["n"], "--push: 'a/b/c': give ORG or ORG/NAME"),
        ("org/one", "repo-per-checkpoint", ["n-iter0000001", "n-iter0000002"], "not 'one': give --push ORG"),
        ("org/one", "repo-per-checkpoint", ["n-iter0000001"], "named by its release folder ('n-iter0000001')"),
        ("org", "revision-per-checkpoint", ["no-iteration"], "does not end in -iterNNNNNNN"),
        ("org", "by-date", ["n"], "layout: unknown layout 'by-date'"),
    ],
)
def test_plan_uploads_refuses(tmp_path, org, layout, names, message):
    with pytest.raises(UserError) as e:
        plan_uploads([tmp_path / n for n in names], org, layout)
    assert message in e.value.one_line() and "\n" not in e.value.one_line()


@pytest.mark.parametrize("bad", ["", "iter 1", "a..b", "-x", "x/", "x.lock", "a/.b", "x:y", "@", "a@{b"])
def test_revision_names_git_refuses(bad):
    with pytest.raises(UserError, match="invalid branch name"):
        check_revision(bad)


@pytest.mark.parametrize("good", ["iter_0012500", "main", "release/v1.0", "exp1-iter12500"])
def test_revision_names_git_accepts(good):
    check_revision(good)


def test_no_token_says_how_to_log_in(tmp_path, token, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UserError) as e:
        push(release_folder(tmp_path), "org/x", revision=None, private=False, dry_run=False)
    assert "no Hugging Face token: set HF_TOKEN, or log in once with `hf auth login`" in e.value.one_line()


def test_missing_folder_and_pr_to_branch(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        push(tmp_path / "nope", "org/x", revision=None, private=False, dry_run=True)
    with pytest.raises(UserError, match="pull request is opened against main"):
        push(release_folder(tmp_path), "org/x", revision="iter_0000001", private=False, dry_run=True, create_pr=True)


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connection is refused at once
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_push_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    clean.update(PYTHONPATH=str(ROOT / "src"), **env)
    cmd = [sys.executable, "-m", "cptkit.release.push", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=clean, timeout=120, check=False)


def test_no_network_is_one_line_and_exit_2(tmp_path):
    port = closed_port()
    folder = release_folder(tmp_path)
    r = run_push_cli(str(folder), "--push", "org", HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN="hf_x",
                     HF_HOME=str(tmp_path / "hf"))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"--push: cannot reach 127.0.0.1:{port}: " in r.stderr and "refused" in r.stderr.lower(), r.stderr
    offline = run_push_cli(str(folder), "--push", "org", HF_HUB_OFFLINE="1", HF_TOKEN="hf_x", HF_HOME=str(tmp_path))
    assert offline.returncode == 2 and "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set" in offline.stderr, (
        offline.stderr
    )
    dry = run_push_cli(str(folder), "--push", "org", "--dry-run", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert dry.returncode == 0 and f"would upload {folder} -> org/{folder.name}: 6 file(s)" in dry.stdout, dry.stderr


def test_exp1_dry_run_prints_the_seeds_name_and_the_release_files(tmp_path):
    """The closing-note listing: seed 000's repository and the files of a Llama-3.1-8B export, strays left out."""
    text = dry_run_text(make_exp1_release(tmp_path))
    head, *files = text.splitlines()
    assert head.endswith(f"-> tokyotech-llm/{EXP1_NAME}: 13 file(s)")
    names = [f.split()[0] for f in files]
    assert names == ["LICENSE", "README.md", "USE_POLICY.md", "config.json", "generation_config.json",
                     *(f"model-0000{k}-of-00004.safetensors" for k in range(1, 5)), "model.safetensors.index.json",
                     "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
    assert not any(s in text for s in STRAYS)
    assert "  model-00001-of-00004.safetensors  4.98 GB" in files  # the shard plan of the 16 GB bf16 export


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "huggingface.co refused the token (401): log in again"),
        (403, "the token may not write to org/x (403)"),
        (500, "--push: huggingface.co: 500 Server Error"),
    ],
)
def test_hub_refusals_are_one_line(tmp_path, token, monkeypatch, status, message):
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    def refuse(*args, **kwargs):
        response = httpx.Response(status, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
        raise HfHubHTTPError(f"{status} Server Error: refused\nmore detail", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    with pytest.raises(UserError) as e:
        push(release_folder(tmp_path), "org/x", revision=None, private=False, dry_run=False)
    assert message in e.value.one_line() and "more detail" not in e.value.one_line()
