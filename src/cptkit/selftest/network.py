"""`cptkit selftest network`: which network NCCL will use on this node, checked before a job starts training.

NCCL loads a network plugin (`libnccl-net.so`, or `libnccl-net-NAME.so` with NCCL_NET_PLUGIN=NAME) with dlopen; on
EFA that is aws-ofi-nccl. If the plugin is missing or cannot load, NCCL does not fail: it falls back to TCP sockets
and a 64-GPU job runs several times slower. This check loads the plugin the same way (dlopen through
LD_LIBRARY_PATH), reads the name it registers (the first field of its `ncclNetPlugin_vN` struct), lists the RDMA
devices in /sys/class/infiniband with their drivers, prints all of it, and exits 1 when the expected network
(CPTKIT_NET_EXPECT: efa | ib) is not usable, unless CPTKIT_ALLOW_SOCKET=1. Torch-free: it runs in a second.

    CPTKIT_NET_EXPECT=efa cptkit selftest network
"""

from __future__ import annotations

import ctypes
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

PLUGIN_VERSIONS = range(10, 1, -1)  # ncclNetPlugin_v10 .. v2: NCCL picks the newest the plugin exports
EXPECT = ("efa", "ib", "none")


@dataclass
class NetReport:
    host: str
    plugin_file: str | None
    plugin_name: str | None
    plugin_error: str | None
    devices: dict[str, str] = field(default_factory=dict)  # RDMA device -> kernel driver

    def transport(self) -> str:
        """What NCCL will use: the plugin's network, its own IB verbs transport, or sockets."""
        efa = any(d == "efa" for d in self.devices.values())
        if self.plugin_name and (efa or self.devices):
            return f"plugin {self.plugin_name}"
        if self.devices and not efa:
            return "IB verbs (NCCL built-in)"
        return "sockets"

    def problem(self, expect: str) -> str | None:
        efa_devices = [n for n, d in self.devices.items() if d == "efa"]
        if expect == "efa":
            if not efa_devices:
                return "no EFA device in /sys/class/infiniband"
            if not self.plugin_name:
                why = self.plugin_error or "no plugin found"
                return f"the NCCL net plugin (aws-ofi-nccl) did not load: {why}"
        if expect == "ib" and not [n for n, d in self.devices.items() if d != "efa"]:
            return "no InfiniBand device in /sys/class/infiniband"
        return None

    def line(self) -> str:
        devs = ", ".join(f"{n} ({d})" for n, d in sorted(self.devices.items())) or "none"
        plugin = (
            f"{self.plugin_file} registers {self.plugin_name!r}"
            if self.plugin_name
            else (f"none ({self.plugin_error})" if self.plugin_error else "none")
        )
        return f"{self.host}: NCCL net plugin {plugin}; RDMA devices {devs}; NCCL will use {self.transport()}"


def plugin_library() -> str:
    name = os.environ.get("NCCL_NET_PLUGIN", "")
    if not name:
        return "libnccl-net.so"
    if "/" in name or name.endswith(".so"):
        return name
    return f"libnccl-net-{name}.so"


def _loaded_path(basename: str) -> str | None:
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            if line.endswith(basename) or f"/{basename}" in line:
                return line.split()[-1]
    except OSError:
        pass
    return None


def load_plugin(library: str | None = None) -> tuple[str | None, str | None, str | None]:
    """(file, registered name, error) of the NCCL net plugin, loaded as NCCL loads it."""
    library = library or plugin_library()
    try:
        lib = ctypes.CDLL(library)
    except OSError as e:
        return None, None, str(e).split(":")[-1].strip() or str(e)
    for v in PLUGIN_VERSIONS:
        try:
            name = ctypes.c_char_p.in_dll(lib, f"ncclNetPlugin_v{v}").value
        except ValueError:
            continue
        path = os.path.realpath(library) if "/" in library else _loaded_path(library) or library
        return path, (name or b"?").decode(errors="replace"), None
    return library, None, "loads, but exports no ncclNetPlugin_vN symbol"


def rdma_devices(root: str | Path = "/sys/class/infiniband") -> dict[str, str]:
    root = Path(root)
    out = {}
    if root.is_dir():
        for dev in sorted(root.iterdir()):
            driver = dev / "device" / "driver"
            out[dev.name] = os.path.basename(os.path.realpath(driver)) if driver.exists() else "?"
    return out


def probe(library: str | None = None, sysfs: str | Path = "/sys/class/infiniband") -> NetReport:
    file, name, err = load_plugin(library)
    return NetReport(socket.gethostname(), file, name, err, rdma_devices(sysfs))


def run(expect: str | None = None, *, allow_socket: bool | None = None, library=None, sysfs=None) -> int:
    """Print the report; 0 if the expected network is usable (or sockets are allowed), else 1."""
    expect = (expect or os.environ.get("CPTKIT_NET_EXPECT") or "none").lower()
    if expect not in EXPECT:
        from cptkit.errors import UserError

        raise UserError(f"must be one of {', '.join(EXPECT)}, got {expect!r}", field="CPTKIT_NET_EXPECT")
    if allow_socket is None:
        allow_socket = os.environ.get("CPTKIT_ALLOW_SOCKET", "0") not in ("", "0", "false", "no")
    report = probe(library, sysfs or "/sys/class/infiniband")
    print(f"cptkit network: {report.line()}", flush=True)
    problem = report.problem(expect) if expect != "none" else None
    if problem is None:
        return 0
    if allow_socket:
        print(f"cptkit network: WARNING {problem}; NCCL falls back to TCP sockets (CPTKIT_ALLOW_SOCKET=1)", flush=True)
        return 0
    print(
        f"cptkit network: error: expected {expect}, but {problem}: NCCL would fall back to TCP sockets. "
        "Fix the image/LD_LIBRARY_PATH, or set CPTKIT_ALLOW_SOCKET=1 to run anyway.",
        flush=True,
    )
    return 1
