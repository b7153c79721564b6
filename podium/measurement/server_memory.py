"""Memory of an inference server on this host: the resident set (RSS) of its process and every process it started
(Triton's Python-backend instances run as child processes), read from ``/proc``; and where NVML is installed
(``nvidia-ml-py``) and a GPU is present, the GPU memory those processes use.

The server's process is the one listening on the URL's port (found through ``/proc/net/tcp*``; only processes
of the same user show their sockets), and it must be a ``tritonserver``: a port published by a container is
held by a proxy whose memory is not the server's. Or its PID is given. A server on another host: not read, and
the caller says so.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
#: TCP state LISTEN in /proc/net/tcp.
LISTEN = "0A"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def listening_pid(port: int) -> int | None:
    """The process (of this user) listening on TCP ``port`` on this host, if any."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not targets:
        return None
    for proc in PROC.iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return int(proc.name)
    return None


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in PROC.iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # the command name is in parentheses and may hold spaces: the parent PID follows the last ')'
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it."""
    children, tree, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def rss_bytes(pid: int) -> int:
    """The resident set of one process (0 once it is gone)."""
    with contextlib.suppress(OSError, ValueError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def command_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (PROC / str(pid) / "comm").read_text().strip()
    return ""


@dataclass(frozen=True)
class ServerMemory:
    """Reads the memory of the server process ``pid`` and its descendants."""

    pid: int

    def processes(self) -> set[int]:
        return set(process_tree(self.pid))

    def wait_for_exit(self, keep: set[int], wait_s: float) -> bool:
        """Wait until the server runs no process beyond ``keep`` (an unloaded model's instances leave after the
        unload returns); False if some are still there after ``wait_s``."""
        deadline, pause = time.monotonic() + wait_s, 0.01
        while not self.processes() <= keep:
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        return True

    def host_rss_mb(self) -> float:
        return sum(rss_bytes(p) for p in process_tree(self.pid)) / 2**20

    def gpu_mb(self) -> float | None:
        """GPU memory the server's processes hold on every GPU (MiB); None without NVML or a GPU."""
        try:
            import pynvml  # nvidia-ml-py, optional
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
        except Exception:  # no driver, no GPU
            return None
        try:
            pids = set(process_tree(self.pid))
            used = 0
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if p.pid in pids and p.usedGpuMemory:
                        used += p.usedGpuMemory
            return used / 2**20
        except Exception:  # a driver that will not list processes (e.g. in some containers)
            return None
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()


def find_server(port: int, pid: int | None = None) -> tuple[ServerMemory | None, str | None]:
    """The memory reader of the server on ``port`` of this host (or of process ``pid``), else why there is none."""
    if pid is not None:
        if not (PROC / str(pid)).is_dir():
            return None, f"server memory not read: no process {pid} on this host"
        return ServerMemory(pid), None
    found = listening_pid(port)
    if found is None:
        return None, f"server memory not read: no process of this user listens on port {port} here (give its PID)"
    name = command_name(found)
    if "tritonserver" not in name:
        held = name or found
        return None, f"server memory not read: port {port} is held by {held!r}, not tritonserver (give its PID)"
    return ServerMemory(found), None


def is_this_host(host: str) -> bool:
    """``host`` names this machine (a loopback address, its host name, or one of its addresses)."""
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:  # an address as it is (IPv6 included), else the name resolved
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    if address.is_loopback or address.is_unspecified:
        return True
    with contextlib.suppress(OSError):
        return str(address) in {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    return False


def find_server_at(address: str, pid: int | None = None) -> tuple[ServerMemory | None, str | None]:
    """:func:`find_server` for a server's ``host:port``: none (and why) when the host is another machine, whose
    processes cannot be read from here (``pid`` names the process itself: it is taken as given)."""
    host, port = address.rsplit(":", 1)
    if pid is None and not is_this_host(host.strip("[]")):
        return (
            None,
            f"server memory not read: the server at {host} is on another host (its RSS cannot be read from here)",
        )
    return find_server(int(port), pid)
