"""`cptkit selftest network`: the NCCL net plugin is loaded as NCCL loads it and its registered name is printed;
an expected EFA/IB network that is not usable fails the job start unless sockets are allowed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from cptkit.selftest import network


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """A stand-in aws-ofi-nccl: a shared library exporting `ncclNetPlugin_v8` whose first field is its name."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build a stand-in plugin")
    d = tmp_path_factory.mktemp("plugin")
    src = d / "p.c"
    src.write_text('struct net { const char* name; void* init; };\nstruct net ncclNetPlugin_v8 = {"Libfabric", 0};\n')
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(d / "libnccl-net.so"), str(src)], check=True)
    bad = d / "bad"
    bad.mkdir()
    (bad / "q.c").write_text("int unrelated = 1;\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(bad / "libnccl-net.so"), str(bad / "q.c")], check=True)
    return d


def sysfs(tmp_path, devices: dict[str, str]):
    root = tmp_path / "infiniband"
    root.mkdir(parents=True)
    for name, driver in devices.items():
        drv = tmp_path / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        (root / name / "device").mkdir(parents=True)
        (root / name / "device" / "driver").symlink_to(drv)
    return root


def test_efa_with_plugin_passes_and_names_it(plugin, tmp_path, capsys):
    root = sysfs(tmp_path, {"rdmap16s27": "efa", "rdmap32s27": "efa"})
    rc = network.run("efa", allow_socket=False, library=str(plugin / "libnccl-net.so"), sysfs=root)
    out = capsys.readouterr().out
    assert rc == 0
    assert "libnccl-net.so registers 'Libfabric'" in out and "rdmap16s27 (efa)" in out
    assert "NCCL will use plugin Libfabric" in out


def test_missing_or_broken_plugin_fails_fast(plugin, tmp_path, capsys):
    root = sysfs(tmp_path, {"rdmap16s27": "efa"})
    assert network.run("efa", allow_socket=False, library=str(tmp_path / "nope.so"), sysfs=root) == 1
    assert "NCCL would fall back to TCP sockets" in capsys.readouterr().out
    assert network.run("efa", allow_socket=False, library=str(plugin / "bad" / "libnccl-net.so"), sysfs=root) == 1
    assert "exports no ncclNetPlugin_vN symbol" in capsys.readouterr().out
    # ... unless sockets are allowed: a warning, and the job goes on.
    assert network.run("efa", allow_socket=True, library=str(tmp_path / "nope.so"), sysfs=root) == 0
    assert "WARNING" in capsys.readouterr().out


def test_no_efa_device_fails_even_with_the_plugin(plugin, tmp_path):
    root = sysfs(tmp_path, {"mlx5_0": "mlx5_core"})
    assert network.run("efa", allow_socket=False, library=str(plugin / "libnccl-net.so"), sysfs=root) == 1
    assert network.run("ib", allow_socket=False, library=str(tmp_path / "nope.so"), sysfs=root) == 0
    assert network.run("ib", allow_socket=False, library=None, sysfs=sysfs(tmp_path / "x", {})) == 1


def test_environment_drives_the_check(monkeypatch, tmp_path, plugin):
    monkeypatch.setenv("CPTKIT_NET_EXPECT", "efa")
    monkeypatch.setenv("CPTKIT_ALLOW_SOCKET", "1")
    assert network.run(library=str(tmp_path / "nope.so"), sysfs=tmp_path) == 0
    monkeypatch.setenv("CPTKIT_ALLOW_SOCKET", "0")
    assert network.run(library=str(tmp_path / "nope.so"), sysfs=tmp_path) == 1
    monkeypatch.setenv("NCCL_NET_PLUGIN", "ofi")
    assert network.plugin_library() == "libnccl-net-ofi.so"


def test_bad_expectation_is_a_user_error(monkeypatch):
    from cptkit.errors import UserError

    with pytest.raises(UserError, match="CPTKIT_NET_EXPECT"):
        network.run("tcp")
