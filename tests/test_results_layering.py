import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from uetool.core.active import ActiveLearningConfig, run_active_learning
from uetool.core.agents import ThurstonianAgent
from uetool.core.outcomes import OutcomeSet
from uetool.io.results import METRIC_KEYS, import_reference_results, read_results, utilities_frame, write_results


def test_write_read_roundtrip_with_pandas_alone(tmp_path):
    outcomes = OutcomeSet.from_records([{"description": f"outcome {i}."} for i in range(30)])
    result = run_active_learning(30, ThurstonianAgent.random_truth(30, seed=0), ActiveLearningConfig(seed=0))
    utilities = utilities_frame(outcomes, result.fit)
    path = write_results(tmp_path / "run", utilities, result.graph, result.metrics, "seed: 0\n")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    edges = pd.read_parquet(f"{path}/edges.parquet")
    assert list(edges.columns) == ["a", "b", "n_a_orig", "n_b_orig", "n_a_flip", "n_b_flip", "n_unparseable",
                                   "n_refusal", "p_a", "split", "round"]
    back = read_results(path)
    assert np.allclose(back.utilities["mean"], result.fit.mean) and back.config == "seed: 0\n"
    with pytest.raises(ValueError, match="required keys"):
        write_results(tmp_path / "bad", utilities, result.graph, {"n_outcomes": 30})


def test_import_reference_results(tmp_path):
    ref = {"options": [{"id": 0, "description": "x."}, {"id": 1, "description": "y."}, {"id": 2, "description": "z."}],
           "utilities": {"0": {"mean": 2.0, "variance": 1.0}, "1": {"mean": 0.0, "variance": 4.0},
                         "2": {"mean": -2.0, "variance": 0.5}},
           "metrics": {"log_loss": 0.6, "accuracy": 0.7}, "holdout_metrics": {"log_loss": 0.65, "accuracy": 0.74}}
    path = tmp_path / "results_utilities_m.json"
    path.write_text(json.dumps(ref))
    imported = import_reference_results(path)
    assert imported.utilities["mean"].tolist() == pytest.approx([1.2247, 0.0, -1.2247], abs=1e-4)
    assert imported.metrics["holdout_accuracy"] == 0.74
    path.write_text(json.dumps({"foo": 1}))
    with pytest.raises(ValueError, match="not a reference results file"):
        import_reference_results(path)


def test_core_imports_no_ray_torch_or_omegaconf():
    code = ("import sys, uetool.core.active, uetool.io.results, uetool.core.parsing, uetool.core.prompts;"
            "bad = [m for m in ('ray', 'torch', 'omegaconf', 'vllm', 'transformers') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
