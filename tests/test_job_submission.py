"""The job works unchanged under `ray job submit` (JobSubmissionClient against a real head node)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def test_compute_utilities_via_job_submission(tmp_path):
    # a short temp dir: Ray's unix socket paths must stay under ~107 characters
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # token authentication stays on
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--num-cpus=1", "--port=6391",
                             "--dashboard-port=8291", "--include-dashboard=true", "--disable-usage-stats",
                             f"--temp-dir={tempfile.mkdtemp(prefix='ujs', dir='/tmp')}"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client_code = f"""
import sys, time
from ray.job_submission import JobSubmissionClient
for _ in range(120):
    try:
        client = JobSubmissionClient("http://127.0.0.1:8291")
        break
    except Exception:
        time.sleep(1)
job = client.submit_job(
    entrypoint="{sys.executable} -m jobs.compute_utilities model=tiny-random engine=simulated "
               "outcomes=quickstart results_root={tmp_path / 'results'} fit.bootstrap=0 progress=false",
    runtime_env={{"working_dir": "{ROOT}", "excludes": [".venv", ".git", "results"]}})
for _ in range(300):
    status = client.get_job_status(job)
    if status.is_terminal():
        break
    time.sleep(1)
print(client.get_job_logs(job)[-4000:])
print("STATUS", status)
"""
    try:
        out = subprocess.run([sys.executable, "-c", client_code], env=env, capture_output=True, text=True,
                             timeout=480)
        assert "STATUS SUCCEEDED" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
        assert "holdout_accuracy" in out.stdout and "results:" in out.stdout
        utilities = pd.read_parquet(tmp_path / "results" / "compute_utilities" / "tiny-random" / "utilities.parquet")
        assert len(utilities) == 40
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
