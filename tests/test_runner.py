"""shared.runner: a child started with ``die_with_parent`` does not outlive its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from shared.compare import any_matches

# The parent starts a child with the helper as its preexec_fn, prints the child's pid, and waits.
PARENT = """
import subprocess, sys, signal
from shared.runner import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         preexec_fn=lambda: die_with_parent(signal.SIGKILL))
print(child.pid, flush=True)
child.wait()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie is dead, waiting for its reaper
    except FileNotFoundError:
        return False


def test_a_child_dies_when_its_parent_is_killed_outright() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, cwd=root) as parent:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)  # no handler, no cleanup: only the kernel can stop the child
    deadline = time.monotonic() + 30
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child_pid)
    if alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not alive, "the child outlived its parent"


def test_any_matches_finds_a_match_among_candidates() -> None:
    assert any_matches(b"b", [b"a", b"b", b"c"])
    assert any_matches(b"b", iter([b"b"]))
    assert not any_matches(b"b", [b"a", b"bb", b""])
    assert not any_matches(b"b", [])
