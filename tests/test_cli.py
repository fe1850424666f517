"""The job command lines fail before Hydra or Ray start when what they are given cannot work, and leave no secret
in Hydra's own files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _job(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.compute_utilities", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_a_results_root_that_is_a_file_is_named(tmp_path):
    file = tmp_path / "results"
    file.write_text("not a directory")
    done = _job(f"results_root={file}")
    assert done.returncode == 2 and f"results_root={file} is a file" in done.stderr
    assert "Traceback" not in done.stderr
    from_env = _job(env={"UETOOL_RESULTS": str(file)})
    assert from_env.returncode == 2 and "UETOOL_RESULTS=" in from_env.stderr


def test_a_secret_on_the_command_line_is_not_copied_into_hydra_files(tmp_path):
    secret = "sk-live-DO-NOT-KEEP-0123456789"
    done = _job(f"results_root={tmp_path}", f"+model.api_key={secret}")  # refused by validation, after Hydra set up
    assert done.returncode != 0 and "unknown `model` keys ['api_key']" in done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


def test_a_local_cluster_without_token_auth_is_refused_before_ray_starts(tmp_path):
    done = _job(f"results_root={tmp_path}", "model=tiny-random", "engine=simulated",
                env={"RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""})
    assert done.returncode == 2 and "refusing to start a local Ray cluster with RAY_AUTH_MODE=disabled" in done.stderr
    assert "Traceback" not in done.stderr and "Started a local Ray instance" not in done.stderr


def test_cluster_security_rules():
    from uetool.runtime.config import RayConfig
    from uetool.runtime.ray_session import InsecureClusterError, check_cluster_security

    check_cluster_security(RayConfig(), {})  # local: Ray 2.60 generates a token
    check_cluster_security(RayConfig(), {"RAY_AUTH_MODE": "token"})
    check_cluster_security(RayConfig(address="10.0.0.1:6379"), {"RAY_AUTH_MODE": "token"})
    with pytest.raises(InsecureClusterError, match="RAY_AUTH_MODE=disabled"):
        check_cluster_security(RayConfig(), {"RAY_AUTH_MODE": "disabled"})
    for env in ({}, {"RAY_AUTH_MODE": "disabled"}):
        with pytest.raises(InsecureClusterError, match="refusing to join the Ray cluster at '10.0.0.1:6379'"):
            check_cluster_security(RayConfig(address="10.0.0.1:6379"), env)
        check_cluster_security(RayConfig(address="10.0.0.1:6379", allow_insecure=True), env)
    check_cluster_security(RayConfig(allow_insecure=True), {"RAY_AUTH_MODE": "disabled"})


@pytest.mark.ray
def test_the_local_cluster_does_not_starve_its_workers(tmp_path):
    script = ("import os, ray\n"
              "from uetool.runtime.ray_session import ensure_ray\n"
              "ensure_ray({'address': None, 'num_cpus': 1})\n"
              "print(ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
              "ray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "0"  # Ray's default worker niceness is 15
