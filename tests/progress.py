"""Progress a file at a time: one line when every test of a test file has finished (its count, failures, its
time and the suite's), in place of a row of dots, so a slow or stuck part of the suite shows where it is.

Registered by ``tests/conftest.py`` in the process that reports (the controller under xdist); ``-v`` keeps
pytest's own line per test instead.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pytest


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@dataclass
class _File:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0  # the tests' own time (setup, call, teardown), summed


@dataclass(eq=False)  # a pytest plugin object: hashed by identity (pluggy keeps plugins in sets)
class FileProgress:
    terminal: pytest.TerminalReporter
    files: dict[str, _File] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished_files: int = 0

    def _expect(self, nodeids: list[str]) -> None:
        if self.files:  # every xdist worker collects the same tests: the first one's list is enough
            return
        for name, count in Counter(map(file_of, nodeids)).items():
            self.files[name] = _File(total=count)

    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        self._expect(ids)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:  # without xdist; under xdist the controller collects nothing itself
            self._expect([item.nodeid for item in session.items])

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        if report.when == "call" and report.passed and not hasattr(report, "wasxfail"):
            return "passed", "", "PASSED"  # no dot: the file's line says it
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.files.get(file_of(report.nodeid))
        if entry is None:
            return
        entry.seconds += report.duration
        if report.failed:
            entry.failed += 1
            self.terminal.write_line(f"FAILED {report.nodeid} ({report.when}, {report.duration:.1f} s)", red=True)
        elif report.skipped:
            entry.skipped += 1
        if report.when != "teardown":
            return
        entry.done += 1
        if entry.done == entry.total:
            self.finished_files += 1
            said = [f"{entry.total} test{'s' * (entry.total != 1)}"]
            said += [f"{entry.failed} failed"] * bool(entry.failed) + [f"{entry.skipped} skipped"] * bool(entry.skipped)
            self.terminal.write_line(
                f"[{self.finished_files}/{len(self.files)} files, {time.monotonic() - self.started:5.0f} s] "
                f"{file_of(report.nodeid)}: {', '.join(said)}, {entry.seconds:.1f} s",
                red=bool(entry.failed),
            )


def register(config: pytest.Config) -> None:
    """Add the per-file progress to this pytest run, unless it is an xdist worker or ``-v`` was asked for."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None or hasattr(config, "workerinput") or config.option.verbose > 0:
        return
    config.pluginmanager.register(FileProgress(terminal), "podium-file-progress")
