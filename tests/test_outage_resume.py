"""An API outage mid-job through the real runtime (Ray engine pool, OpenAI engine, durable store) against a local
OpenAI-compatible server: the job stops non-zero, failures are never answers, and the next run asks exactly the
failed requests and ends identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("httpx")

from tests.conftest import TEST_API_KEY, TEST_API_KEY_ENV, compose  # noqa: E402
from tests.test_engine_openai import FakeServer, Reply  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]
N_OUTCOMES = 12


def preference_reply(number: int, body: dict[str, Any]) -> Reply:
    """A seeded Thurstonian respondent: outcome i has utility i / 3; each of the n samples is a keyed coin."""
    first, second = (int(x) for x in re.findall(r"Outcome (\d+) happens", body["messages"][-1]["content"])[:2])
    p_first = 0.5 * (1 + math.erf((first - second) / 3 / math.sqrt(2)))
    choices = []
    for i in range(body.get("n", 1)):
        digest = hashlib.blake2b(f"{body['messages'][-1]['content']}|{body.get('seed')}|{i}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        choices.append({"index": i, "message": {"role": "assistant", "content": "A" if draw < p_first else "B"}})
    return 200, {}, {"choices": choices}


def _config(server: FakeServer, root, outcomes) -> dict:
    return compose(["model=gpt-4o-mini", f"model.api_base={server.url}", f"model.api_key_env={TEST_API_KEY_ENV}",
                    "outcomes=custom", f"outcomes.source={outcomes}", "elicitation.k=4", "transitivity.n_triads=20",
                    "fit.bootstrap=0", "+engine.kwargs.max_retries=0", "progress=false", f"results_root={root}"])


def test_an_outage_stops_the_job_and_the_next_run_asks_only_the_failures(ray_cluster, tmp_path, monkeypatch):
    from uetool.io.store import ResponseStore
    from uetool.runtime.compute import compute_utilities
    from uetool.runtime.elicit import ElicitationFailed

    monkeypatch.setenv(TEST_API_KEY_ENV, TEST_API_KEY)
    outcomes = tmp_path / "outcomes.json"
    outcomes.write_text(json.dumps([f"Outcome {i} happens." for i in range(N_OUTCOMES)]))
    server = FakeServer()
    failing_from = [None]  # request number from which the server answers 503

    def behaviour(number: int, body: dict[str, Any]) -> Reply:
        if failing_from[0] is not None and number >= failing_from[0]:
            return 503, {}, {"error": {"message": "the service is down"}}
        return preference_reply(number, body)

    server.behaviour = behaviour
    try:
        clean = compute_utilities(_config(server, tmp_path / "clean", outcomes))
        total = server.count
        holdout_and_first_round = 6 + 2 * N_OUTCOMES  # 3 held-out pairs, then the initial 12-pair graph
        failing_from[0] = total + holdout_and_first_round

        with pytest.raises(ElicitationFailed, match=r"requests failed.*503 Service Unavailable.*run the job again"):
            compute_utilities(_config(server, tmp_path / "run", outcomes))
        store = ResponseStore(str(tmp_path / "run"), "gpt-4o-mini")
        assert len(store) == holdout_and_first_round  # only answers; the failures are records of attempts
        failed = total - holdout_and_first_round
        assert store.count_rows() == holdout_and_first_round + failed

        failing_from[0] = None
        before = server.count
        resumed = compute_utilities(_config(server, tmp_path / "run", outcomes))
        assert server.count - before == failed  # exactly the failed requests, nothing answered twice
    finally:
        server.stop()
    assert resumed["metrics"]["failed_requests"] == 0
    pd.testing.assert_frame_equal(pd.read_parquet(f"{resumed['out_dir']}/utilities.parquet"),
                                  pd.read_parquet(f"{clean['out_dir']}/utilities.parquet"))
    assert resumed["metrics"]["holdout_accuracy"] == clean["metrics"]["holdout_accuracy"]


def test_engine_retries_inside_replicas_reach_the_job(ray_cluster):
    """The OpenAI engine's retries happen in a Ray actor whose log the driver never sees: the pool collects them."""
    from uetool.engines.base import ElicitationRequest, GenerationSettings, RequestBatch
    from uetool.runtime.pool import EnginePool

    server = FakeServer()
    server.behaviour = lambda n, body: ((503, {"Retry-After": "0"}, {}) if n % 2 == 0
                                        else preference_reply(n, body))
    requests = RequestBatch.from_requests([ElicitationRequest(f"k{i}", f"Outcome {i} happens. Outcome {i + 1} "
                                                              "happens.", ("A", "B"), None, i, i + 1)
                                           for i in range(6)])
    try:
        with EnginePool("openai", {"model": "m", "api_base": server.url, "api_key_env": TEST_API_KEY_ENV,
                                   "max_concurrency": 1, "initial_backoff_s": 0.01}, replicas=1,
                        progress=False) as pool:
            out = pool.run(requests, GenerationSettings(mode="sample", k=2))
            counters = pool.engine_counters()
    finally:
        server.stop()
    assert out.errors == [None] * 6
    assert counters == {"retries": 6, "gave_up": 0}  # every request failed once, then succeeded


def test_the_job_command_exits_3_on_an_outage_naming_the_errors(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    outcomes = tmp_path / "outcomes.json"
    outcomes.write_text(json.dumps([f"Outcome {i} happens." for i in range(N_OUTCOMES)]))
    server = FakeServer()
    server.behaviour = lambda n, body: (503, {}, {"error": {"message": "the service is down"}})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "jobs.compute_utilities", "model=gpt-4o-mini", f"model.api_base={server.url}",
             f"model.api_key_env={TEST_API_KEY_ENV}", f"outcomes={outcomes}", "elicitation.k=2",
             "+engine.kwargs.max_retries=0", "progress=false", f"results_root={tmp_path / 'results'}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", TEST_API_KEY_ENV: TEST_API_KEY})
    finally:
        server.stop()
    assert done.returncode == 3, done.stderr[-3000:]
    assert "requests failed" in done.stderr and "503 Service Unavailable" in done.stderr
    assert "Traceback" not in done.stderr
