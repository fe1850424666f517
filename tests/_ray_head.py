"""A throwaway Ray head node and a `ray job submit` client for the job-submission tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CLIENT = """
import sys, time
from ray.job_submission import JobSubmissionClient
deadline = time.time() + {wait_s}
client, last = None, None
while client is None:
    try:
        client = JobSubmissionClient("http://127.0.0.1:{dashboard_port}")
    except Exception as error:  # the head answers HTTP only once its dashboard is up
        last = error
        if time.time() > deadline:
            sys.exit(f"the Ray head at port {dashboard_port} never answered: {{last}}")
        time.sleep(1)
while True:
    try:
        job = client.submit_job(entrypoint={entrypoint!r},
                                runtime_env={{"working_dir": {root!r},
                                              "excludes": [".venv", ".venv-vllm", ".git", "results"]}})
        break
    except RuntimeError as error:
        # the head answers HTTP before its job agent is up ("No available agent"): retry only that
        if "No available agent" not in str(error) or time.time() > deadline:
            raise
        time.sleep(1)
while not (status := client.get_job_status(job)).is_terminal():
    time.sleep(1)
print(client.get_job_logs(job)[-6000:])
print("STATUS", status)
"""


@contextlib.contextmanager
def ray_head(num_cpus: int, port: int, dashboard_port: int) -> Iterator[dict]:
    """Start `ray start --head` (token auth on) and yield the environment a client needs; stop it afterwards."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # token authentication stays on
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # a short temp dir: Ray's unix socket paths must stay under ~107 characters
    # every port of its own: the session's local cluster (tests/conftest.py) already holds Ray's default agent
    # ports, and a head whose job agent cannot bind answers "No available agent" forever
    ports = [f"--dashboard-agent-listen-port={port + 100}", f"--dashboard-agent-grpc-port={port + 101}",
             f"--runtime-env-agent-port={port + 102}", f"--metrics-export-port={port + 103}",
             f"--ray-client-server-port={port + 104}"]
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--num-cpus={num_cpus}", f"--port={port}",
                             f"--dashboard-port={dashboard_port}", "--include-dashboard=true", *ports,
                             "--disable-usage-stats", f"--temp-dir={tempfile.mkdtemp(prefix='ujs', dir='/tmp')}"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


def submit_and_wait(env: dict, dashboard_port: int, entrypoint: str, timeout_s: int = 900,
                    wait_s: int = 300) -> subprocess.CompletedProcess:
    """Submit `entrypoint` with the repo as working dir, wait for it, return the client's output (logs + status)."""
    code = _CLIENT.format(wait_s=wait_s, dashboard_port=dashboard_port, entrypoint=entrypoint, root=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)
