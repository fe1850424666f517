"""The job works unchanged under `ray job submit` (JobSubmissionClient against a real head node)."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from _ray_head import ray_head, submit_and_wait


@pytest.mark.ray
@pytest.mark.slow
def test_compute_utilities_via_job_submission(tmp_path):
    results = tmp_path / "results"
    with ray_head(num_cpus=1, port=6391, dashboard_port=8291) as env:
        out = submit_and_wait(env, 8291, f"{sys.executable} -m jobs.compute_utilities model=tiny-random "
                                         f"engine=simulated outcomes=quickstart results_root={results} "
                                         "fit.bootstrap=0 progress=false")
    assert "STATUS SUCCEEDED" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert "holdout_accuracy" in out.stdout and "results:" in out.stdout
    utilities = pd.read_parquet(results / "compute_utilities" / "tiny-random.simulated" / "utilities.parquet")
    assert len(utilities) == 40
