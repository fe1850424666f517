"""One job at a time per response store: a second job waits or fails naming the holder; a killed holder's lock is
taken over at once; stores of one process share the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from uetool.io.store import ResponseStore
from uetool.io.store_lock import StoreLocked

HOLDER = textwrap.dedent("""
    import sys, time
    from uetool.io.store import ResponseStore
    with ResponseStore(sys.argv[1], "m").hold():
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        open(sys.argv[1] + "/letting-go", "w").close()  # written while still holding the lock
""")


def _holder(root, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(seconds)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_job_fails_naming_the_holder_and_takes_over_a_killed_ones_lock(tmp_path):
    proc = _holder(tmp_path, 120)
    try:
        with pytest.raises(StoreLocked, match=rf"in use by another job \(pid {proc.pid} on .*-c"):
            ResponseStore(str(tmp_path), "m").hold(wait_s=0)
        os.kill(proc.pid, signal.SIGKILL)  # a killed job leaves no stale lock behind
        proc.wait()
        with ResponseStore(str(tmp_path), "m").hold(wait_s=0):
            pass
    finally:
        proc.kill()


def test_a_second_job_waits_for_the_first_to_finish(tmp_path, capsys):
    proc = _holder(tmp_path, 1.0)
    try:
        with ResponseStore(str(tmp_path), "m").hold(wait_s=60):
            assert (tmp_path / "letting-go").exists()  # granted only once the holder let go
    finally:
        proc.kill()
    assert "waiting for the response store" in capsys.readouterr().out


def test_stores_of_one_process_share_the_lock(tmp_path):
    first, second = ResponseStore(str(tmp_path), "m"), ResponseStore(str(tmp_path), "m")
    outer = first.hold(wait_s=0)
    with second.hold(wait_s=0):  # another experiment of the same job: shares it
        pass
    proc = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path), "0"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode != 0 and "StoreLocked" in proc.stderr  # still held by `outer`
    outer.release()
    with ResponseStore(str(tmp_path), "other-model").hold(wait_s=0):  # another store: its own lock
        pass
