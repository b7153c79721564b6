"""The suite reports a line per finished test file (tests/progress.py), in a pytest run of its own."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_each_finished_file_gets_a_line_and_a_failure_is_named_at_once(tmp_path) -> None:
    (tmp_path / "test_two.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2\n")
    (tmp_path / "test_one.py").write_text("def test_c():\n    pass\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    lines = out.splitlines()

    def said(*parts: str) -> bool:
        return any(all(part in line for part in parts) for line in lines)

    assert said("FAILED ", "test_two.py::test_b (call"), out
    assert said(" files, ", "test_one.py: 1 test,"), out
    assert said(" files, ", "test_two.py: 2 tests, 1 failed"), out
    assert "..." not in out  # no row of dots
