""".ci/run lints and tests, and fails when either fails (run here with a stand-in ``make`` that only
records its targets; Redis and RabbitMQ are the real ones, already up)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_MAKE = """#!/usr/bin/env bash
echo "$1" >> "$CALLS"
[ "$1" != "$FAIL" ]
"""


def run_ci(tmp_path: Path, fail: str) -> tuple[int, list[str]]:
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", checkout / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "FAIL": fail}
    done = subprocess.run(["bash", str(checkout / ".ci" / "run")], env=env, capture_output=True, timeout=120)
    return done.returncode, calls.read_text().split()


@pytest.mark.parametrize(("fail", "ok"), [("nothing", True), ("lint", False), ("test", False)])
def test_ci_runs_lint_and_test_and_fails_when_either_fails(tmp_path: Path, fail: str, ok: bool) -> None:
    status, calls = run_ci(tmp_path, fail)
    assert calls == ["lint", "test"]  # the suite runs even when lint failed
    assert (status == 0) is ok
