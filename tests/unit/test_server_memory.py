"""Finding an inference server's process by its port, and reading its process tree's memory from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from podium.coordination.embedded import free_port
from podium.measurement.server_memory import ServerMemory, find_server, find_server_at, listening_pid, process_tree


def test_the_process_on_a_port_is_found_and_must_be_a_tritonserver() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listening_pid(port) == os.getpid()
        memory, why = find_server(port)
        # a proxy (or anything else) on the port is not the server: its memory would be reported as the server's
        assert memory is None and why is not None and "not tritonserver (give its PID)" in why
    memory, why = find_server(free_port())
    assert memory is None and why is not None and "no process of this user listens on port" in why
    memory, why = find_server(1, pid=os.getpid())
    assert memory == ServerMemory(os.getpid()) and why is None
    # by address: a server on another machine is never matched to a process here that holds the same port
    memory, why = find_server_at("203.0.113.7:1", None)
    assert memory is None and why is not None and "203.0.113.7 is on another host" in why
    assert find_server_at("203.0.113.7:1", pid=os.getpid()) == (ServerMemory(os.getpid()), None)  # the PID given
    assert "no process of this user listens on port" in (find_server_at(f"[::1]:{free_port()}")[1] or "")


def test_the_memory_counts_the_children_and_waits_for_them_to_leave() -> None:
    before = set(process_tree(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        memory = ServerMemory(os.getpid())
        assert child.pid in process_tree(os.getpid())
        alone = memory.host_rss_mb() - ServerMemory(child.pid).host_rss_mb()
        assert memory.host_rss_mb() > alone > 0
        assert not memory.wait_for_exit(before, wait_s=0.05)  # the child is still there
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert memory.wait_for_exit(before, wait_s=5)
