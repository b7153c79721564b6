"""A Redis for embedded use (``podium demo``): a ``redis-server`` on a free port when one is installed,
else an in-process fakeredis TCP server (with TCP_NODELAY; without it Celery runs ~80x slower)."""

from __future__ import annotations

import logging
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_command(binary: str, port: int, folder: Path, extra: list[str] | None = None) -> list[str]:
    """redis-server on 127.0.0.1 only, no persistence, in the foreground (so its PID is the caller's to stop)."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
        *(extra or []),
    ]


class LocalRedis:
    """Started by :meth:`start`, stopped by :meth:`stop` (by PID for redis-server)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.kind = ""
        self._proc: subprocess.Popen | None = None
        self._server: socketserver.TCPServer | None = None
        self._log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        binary = shutil.which("redis-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        if binary:
            self._log = open(self.folder / "redis.log", "wb")  # noqa: SIM115 - closed in stop()
            self._proc = subprocess.Popen(
                redis_server_command(binary, self.port, self.folder),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.kind = f"redis-server (pid {self._proc.pid})"
        else:
            self._start_fake()
            self.kind = "embedded fakeredis (no redis-server installed)"
        self._wait()
        return self

    def _start_fake(self) -> None:
        from fakeredis import TcpFakeServer

        class NoDelayServer(TcpFakeServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                conn, addr = super().get_request()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return conn, addr

        socketserver.TCPServer.allow_reuse_address = True
        self._server = NoDelayServer(("127.0.0.1", self.port), server_type="redis")
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fakeredis").start()

    def _wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"*1\r\n$4\r\nPING\r\n")  # RESP framing: fakeredis reads no inline commands
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"local Redis did not start on port {self.port} ({self.kind})")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._log is not None:
            self._log.close()
            self._log = None
