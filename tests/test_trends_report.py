"""Cross-model trends, utility convergence, the sweep report and `python -m jobs.report`."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from uetool.core.trends import metrics_table, trend_statistics, utility_convergence
from uetool.io.sweep_records import load_sweep
from uetool.reporting import write_sweep_report

ROOT = Path(__file__).resolve().parent.parent
EVIL = "CUDA OOM <script>alert('x')</script> & \"quotes\""


def _metrics(capability: float, rng: np.random.Generator) -> dict:
    skill = (capability - 30) / 60
    return {"n_outcomes": 30, "n_edges": 120, "n_holdout_edges": 20,
            "holdout_accuracy": 0.55 + 0.4 * skill + rng.normal(0, 0.02), "holdout_log_loss": 0.7 - 0.3 * skill,
            "train_accuracy": 0.6 + 0.35 * skill, "train_log_loss": 0.65 - 0.3 * skill,
            "average_confidence": 0.6 + 0.3 * skill, "log10_cycle_probability": -0.6 - 1.0 * skill,
            "hard_cycle_rate": 0.2 * (1 - skill), "n_triads": 100, "unparseable_rate": 0.05,
            "refusal_rate": 0.1 * (1 - skill), "position_bias": 0.6 - 0.1 * skill, "position_bias_original": 0.62,
            "position_bias_flipped": None, "fit_converged": True, "fit_iterations": 40, "seed": 0, "engine": "hf"}


def make_sweep(root: Path, name: str = "demo", n_done: int = 6, n_failed: int = 1, n_outcomes: int = 30,
               seed: int = 0) -> dict[str, pd.DataFrame]:
    """A sweep directory as the sweep job writes it: records + per-model results. Returns the utilities."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n_outcomes)
    models_dir = root / "sweeps" / name / "models"
    models_dir.mkdir(parents=True)
    utilities = {}
    for i in range(n_done + n_failed):
        key, capability = f"model-{i:02d}", 30.0 + 60.0 * i / max(1, n_done + n_failed - 1)
        record = {"model": key, "status": "done", "capability": capability, "capability_name": "mmlu",
                  "results_dir": f"compute_utilities/{key}", "metrics": None, "error": None,
                  "seconds": {"engine": 10.0, "fit": 2.0, "total": 12.5 + i},
                  "finished_at": f"2026-11-22T10:{i:02d}:00"}
        if i >= n_done:
            record.update(status="failed", error=f"{EVIL}\nTraceback line {i}", seconds=None)
        else:
            out = root / "compute_utilities" / key
            out.mkdir(parents=True)
            noise = 1.5 * (1 - i / max(1, n_done))  # larger models agree more with the truth (and each other)
            mean = truth + rng.normal(0, noise, n_outcomes)
            frame = pd.DataFrame({"id": [f"o{j}" for j in range(n_outcomes)],
                                  "description": [f"Outcome number {j} <b>" for j in range(n_outcomes)],
                                  "category": [f"cat{j % 3}" for j in range(n_outcomes)],
                                  "mean": (mean - mean.mean()) / mean.std(),
                                  "variance": 0.1, "ci_low": np.nan, "ci_high": np.nan})
            frame.to_parquet(out / "utilities.parquet")
            metrics = _metrics(capability, rng)
            (out / "metrics.json").write_text(json.dumps(metrics))
            record["metrics"] = metrics if i % 2 == 0 else None  # odd ones: read back from metrics.json
            utilities[key] = frame
        (models_dir / f"{key}.json").write_text(json.dumps(record))
    return utilities


# ---- trend statistics -------------------------------------------------------------------------------------------


def _table(capability, values, status=None) -> pd.DataFrame:
    n = len(capability)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "status": status or ["done"] * n,
                         "capability": np.asarray(capability, float), "metric": np.asarray(values, float)})


def test_perfect_monotone_trend_has_rho_one_and_ci_in_range():
    x = np.arange(10.0)
    trends = trend_statistics(_table(x, np.exp(x / 3)), ["metric"], n_boot=500, seed=1)
    row = trends.iloc[0]
    assert row["n"] == 10 and row["spearman_rho"] == pytest.approx(1.0)
    assert row["spearman_ci_low"] == pytest.approx(1.0) and row["spearman_ci_high"] == pytest.approx(1.0)
    assert 0 < row["pearson_r"] < 1
    assert -1 <= row["pearson_ci_low"] <= row["pearson_r"] <= row["pearson_ci_high"] <= 1


def test_trend_matches_scipy_and_least_squares_and_is_seeded():
    rng = np.random.default_rng(3)
    x = rng.uniform(30, 90, 25)
    y = 0.01 * x + rng.normal(0, 0.1, 25)
    table = _table(x, y)
    a = trend_statistics(table, ["metric"], n_boot=400, seed=7).iloc[0]
    assert a["pearson_r"] == pytest.approx(pearsonr(x, y).statistic)
    assert a["spearman_rho"] == pytest.approx(spearmanr(x, y).statistic)
    slope, intercept = np.polyfit(x, y, 1)
    assert (a["slope"], a["intercept"]) == pytest.approx((slope, intercept))
    assert a["pearson_ci_low"] < a["pearson_r"] < a["pearson_ci_high"]
    assert -1 <= a["spearman_ci_low"] < a["spearman_ci_high"] <= 1
    same = trend_statistics(table, ["metric"], n_boot=400, seed=7).iloc[0]
    other = trend_statistics(table, ["metric"], n_boot=400, seed=8).iloc[0]
    assert same["pearson_ci_low"] == a["pearson_ci_low"] and same["spearman_ci_high"] == a["spearman_ci_high"]
    assert other["pearson_ci_low"] != a["pearson_ci_low"]


def test_trend_uses_only_finished_models_and_explains_nan():
    table = _table([1, 2, 3, 4], [1.0, 2.0, 3.0, 100.0], status=["done", "done", "done", "failed"])
    assert trend_statistics(table, ["metric"], n_boot=50).iloc[0]["n"] == 3
    few = trend_statistics(_table([1, 2], [1, 2]), ["metric"], n_boot=50).iloc[0]
    assert few["n"] == 2 and np.isnan(few["pearson_r"]) and np.isnan(few["slope"]) and ">= 3" in few["note"]
    flat = trend_statistics(_table([1, 2, 3], [5, 5, 5]), ["metric"], n_boot=50).iloc[0]
    assert np.isnan(flat["spearman_rho"]) and flat["slope"] == pytest.approx(0) and "same" in flat["note"]
    nan_metric = trend_statistics(_table([1, 2, 3, 4], [1, np.nan, 3, 4]), ["metric"], n_boot=50).iloc[0]
    assert nan_metric["n"] == 3
    with pytest.raises(ValueError, match="unknown metrics"):
        trend_statistics(_table([1, 2, 3], [1, 2, 3]), ["nope"])
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        trend_statistics(_table([1, 2, 3], [1, 2, 3]), ["metric"], n_boot=0)


def test_metrics_table_one_row_per_model_sorted_by_capability():
    records = [{"model": "big", "status": "done", "capability": 80, "metrics": {"holdout_accuracy": 0.9,
                                                                               "engine": "hf", "extra": 2}},
               {"model": "none", "status": "done", "capability": None, "metrics": {"holdout_accuracy": None}},
               {"model": "small", "status": "failed", "capability": 40, "metrics": None, "error": "boom"}]
    table = metrics_table(records)
    assert table["model"].tolist() == ["small", "big", "none"]
    assert {"holdout_accuracy", "extra", "error"} <= set(table.columns) and "engine" not in table.columns
    assert table.loc[table["model"] == "small", "error"].item() == "boom"
    assert np.isnan(table.loc[table["model"] == "none", "holdout_accuracy"].item())
    with pytest.raises(ValueError, match="'status' must be one of"):
        metrics_table([{"model": "x", "status": "running"}])


# ---- utility convergence ----------------------------------------------------------------------------------------


def _utils(ids, mean) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "mean": np.asarray(mean, float)})


def test_convergence_identical_and_scaled_vectors_are_similar_one():
    v = np.random.default_rng(0).normal(size=20)
    ids = [f"o{i}" for i in range(20)]
    sim, spread = utility_convergence({"a": _utils(ids, v), "b": _utils(ids, v), "c": _utils(ids, 3 * v + 7)},
                                      {"a": 50.0, "b": 60.0, "c": 70.0})
    assert np.allclose(sim.to_numpy(), 1.0)
    assert np.allclose(spread["neighbour_std"], 0.0, atol=1e-12)
    assert spread["n_neighbours"].tolist() == [2, 2, 2]


def test_convergence_aligns_shared_ids_and_orders_by_capability():
    v = np.arange(6.0)
    a = _utils(["x", "y", "z", "w", "only_a", "q"], [0, 1, 2, 3, 99, 4])
    b = _utils(["q", "w", "z", "y", "x", "only_b"], [4, 3, 2, 1, 0, -50])  # same values, shuffled order
    c = _utils(["x", "y", "z", "w", "q"], -v[:5])
    sim, spread = utility_convergence({"a": a, "b": b, "c": c}, {"a": 70.0, "b": 10.0, "c": 40.0})
    assert sim.index.tolist() == ["b", "c", "a"] and sim.columns.tolist() == ["b", "c", "a"]
    assert sim.loc["a", "b"] == pytest.approx(1.0) and sim.loc["a", "c"] == pytest.approx(-1.0)
    assert sim.attrs["n_shared_outcomes"] == 5
    assert spread["model"].tolist() == ["b", "c", "a"]


def test_neighbour_std_uses_nearest_models_in_capability():
    ids = [f"o{i}" for i in range(8)]
    rng = np.random.default_rng(1)
    vectors = {f"m{i}": rng.normal(size=8) for i in range(7)}
    caps = {f"m{i}": float(10 * i) for i in range(7)} | {"m6": None}
    _, spread = utility_convergence({m: _utils(ids, v) for m, v in vectors.items()}, caps)
    row = spread.set_index("model").loc["m0"]
    assert row["neighbours"] == "m1, m2, m3, m4"  # m6 has no capability: nobody's neighbour
    z = np.stack([(vectors[m] - vectors[m].mean()) / vectors[m].std() for m in ["m0", "m1", "m2", "m3", "m4"]])
    assert row["neighbour_std"] == pytest.approx(z.std(axis=0).mean())
    assert np.isnan(spread.set_index("model").loc["m6", "neighbour_std"])


def test_mean_similarity_is_each_models_mean_over_the_others():
    ids = [f"o{i}" for i in range(10)]
    v = np.random.default_rng(2).normal(size=10)
    sim, spread = utility_convergence({"a": _utils(ids, v), "b": _utils(ids, v), "c": _utils(ids, -v)},
                                      {"a": 1.0, "b": 2.0, "c": 3.0})
    got = spread.set_index("model")["mean_similarity"]
    assert got["a"] == pytest.approx(0.0) and got["b"] == pytest.approx(0.0) and got["c"] == pytest.approx(-1.0)


def test_category_view_means_and_held_out_accuracy_per_category():
    from uetool.core.trends import category_view

    utilities = pd.DataFrame({"mean": [2.0, 1.0, -1.0, -2.0], "variance": 0.1,
                              "category": ["good", "good", "bad", ""]})
    # held-out edges: (0, 2) observed as the fit says; (1, 3) against it; (0, 1) as the fit says
    edges = pd.DataFrame({"a": [0, 1, 0, 2], "b": [2, 3, 1, 3], "p_a": [0.9, 0.2, 0.7, 0.9],
                          "split": ["holdout", "holdout", "holdout", "train"]})
    view = category_view(utilities, edges).set_index("category")
    z = (utilities["mean"] - utilities["mean"].mean()) / utilities["mean"].std(ddof=0)
    assert view.index.tolist() == ["good", "bad", "uncategorised"]  # by mean utility
    assert view.loc["good", "mean_utility"] == pytest.approx(z[:2].mean()) and view.loc["good", "n_outcomes"] == 2
    assert view.loc["good", "holdout_accuracy"] == pytest.approx(2 / 3) and view.loc["good", "n_holdout_edges"] == 3
    assert view.loc["bad", "holdout_accuracy"] == 1.0 and view.loc["uncategorised", "holdout_accuracy"] == 0.0
    assert np.isnan(category_view(utilities).loc[0, "holdout_accuracy"])  # no edges: coherence unknown


def test_convergence_too_little_data_is_empty_not_an_error():
    sim, spread = utility_convergence({"a": _utils(["x", "y"], [0, 1])}, {"a": 1.0})
    assert sim.empty and spread.empty and ">= 2 models" in sim.attrs["reason"]
    sim, spread = utility_convergence({"a": _utils(["x", "y"], [0, 1]), "b": _utils(["x", "z"], [0, 1])},
                                      {"a": 1.0, "b": 2.0})
    assert sim.empty and "share 1 outcome" in spread.attrs["reason"]
    with pytest.raises(ValueError, match="no capability entry"):
        utility_convergence({"a": _utils(["x", "y"], [0, 1]), "b": _utils(["x", "y"], [0, 1])}, {"a": 1.0})


# ---- loading a sweep --------------------------------------------------------------------------------------------


def test_load_sweep_reads_records_and_flags_missing_results(tmp_path):
    make_sweep(tmp_path, n_done=3, n_failed=1)
    (tmp_path / "compute_utilities" / "model-01" / "utilities.parquet").unlink()
    (tmp_path / "sweeps" / "demo" / "models" / "model-00.json.abc.tmp").write_text("{half")  # a write in flight
    with pytest.warns(UserWarning, match="model-01"):
        records, utilities = load_sweep(str(tmp_path), "demo")
    assert [r["model"] for r in records] == ["model-00", "model-01", "model-02", "model-03"]
    assert sorted(utilities) == ["model-00", "model-02"]
    assert "results missing" in records[1]["note"]
    assert records[1]["metrics"]["holdout_accuracy"] > 0  # metrics: null in the record, read from metrics.json


def test_load_sweep_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(str(tmp_path), "nope")
    (tmp_path / "sweeps" / "empty" / "models").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no model records"):
        load_sweep(str(tmp_path), "empty")
    make_sweep(tmp_path, n_done=2, n_failed=0)
    bad = tmp_path / "sweeps" / "demo" / "models" / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json.*malformed JSON"):
        load_sweep(str(tmp_path), "demo")
    bad.write_text(json.dumps({"model": "broken"}))
    with pytest.raises(ValueError, match=r"broken\.json.*'status'"):
        load_sweep(str(tmp_path), "demo")


# ---- the report -------------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects what a browser would load or run: image sources, scripts, external links, text."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.scripts, self.external, self.text, self.details = [], 0, [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.images += [attrs["src"]] if tag == "img" else []
        self.scripts += tag == "script"
        self.details += tag == "details"
        self.external += [v for k, v in attrs.items() if k in ("src", "href") and v and "://" in v]
        self.external += [v for k, v in attrs.items() if k == "rel" and v == "stylesheet"]

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_writes_every_file_and_escapes_failures(tmp_path):
    make_sweep(tmp_path, n_done=6, n_failed=2, n_outcomes=30)
    path = write_sweep_report(tmp_path, "demo", seed=0)
    out = tmp_path / "sweeps" / "demo"
    assert path == out / "report.html"
    for name in ("metrics_by_model.csv", "metrics_by_model.parquet", "trends.csv", "convergence.csv",
                 "neighbour_std.csv", "convergence_heatmap.png", "neighbour_std.png",
                 "trend_holdout_accuracy.png", "trend_average_confidence.png", "trend_log10_cycle_probability.png",
                 "trend_hard_cycle_rate.png", "trend_refusal_rate.png", "trend_position_bias.png"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob("*.tmp"))
    table = pd.read_parquet(out / "metrics_by_model.parquet")
    assert len(table) == 8 and table["status"].value_counts().to_dict() == {"done": 6, "failed": 2}
    trends = pd.read_csv(out / "trends.csv").set_index("metric")
    assert trends.loc["holdout_accuracy", "n"] == 6 and trends.loc["holdout_accuracy", "pearson_r"] > 0.8
    assert trends.loc["position_bias_flipped", "n"] == 0  # null for every model: a row with a reason, no plot
    assert not (out / "trend_position_bias_flipped.png").exists()
    similarity = pd.read_csv(out / "convergence.csv", index_col="model")
    assert similarity.shape == (6, 6) and np.allclose(np.diag(similarity), 1.0)

    html = path.read_text(encoding="utf-8")
    page = _parse(path)
    assert page.scripts == 0 and page.external == []
    assert all((out / src).exists() for src in page.images) and "convergence_heatmap.png" in page.images
    assert page.details == 6  # one collapsible utility table per finished model
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert EVIL in "".join(page.text)  # shown verbatim to the reader
    assert "Outcome number 0 <b>" in "".join(page.text) and "<b>" not in html.replace("<body>", "")
    for section in ("Summary", "Trends against capability", "Utility convergence", "Refusal and position-bias rates",
                    "Failures", "Utilities and coherence per outcome category"):
        assert f">{section}</h2>" in html
    assert "mean_similarity.png" in page.images and "categories.png" in page.images
    categories = pd.read_csv(out / "categories.csv")
    assert len(categories) == 6 * 3 and set(categories["category"]) == {"cat0", "cat1", "cat2"}


def test_report_for_one_model_and_for_all_failed(tmp_path):
    make_sweep(tmp_path, name="one", n_done=1, n_failed=0)
    path = write_sweep_report(tmp_path, "one")
    html = path.read_text(encoding="utf-8")
    assert "No convergence analysis" in html and "No model failed" in html and "needs &gt;= 3" in html
    assert (path.parent / "trend_holdout_accuracy.png").exists()
    assert not (path.parent / "convergence_heatmap.png").exists()

    make_sweep(tmp_path / "b", name="bad", n_done=0, n_failed=3)
    path = write_sweep_report(tmp_path / "b", "bad")
    page = _parse(path)
    assert page.images == [] and "".join(page.text).count("Traceback line") == 3
    assert pd.read_csv(path.parent / "trends.csv")["n"].eq(0).all()


def test_report_for_sixty_models(tmp_path):
    make_sweep(tmp_path, name="big", n_done=57, n_failed=3, n_outcomes=40)
    path = write_sweep_report(tmp_path, "big", n_boot=200)
    similarity = pd.read_csv(path.parent / "convergence.csv", index_col="model")
    assert similarity.shape == (57, 57)
    assert similarity.index.tolist() == sorted(similarity.index)  # capability grows with the key in make_sweep
    spread = pd.read_csv(path.parent / "neighbour_std.csv")
    assert spread["n_neighbours"].eq(4).all()
    # Agreement grows with capability in make_sweep: neighbour spread falls.
    assert pd.read_csv(path.parent / "trends.csv").set_index("metric").loc["neighbour_std", "spearman_rho"] < -0.5
    assert _parse(path).details == 57


# ---- the job ----------------------------------------------------------------------------------------------------


def test_jobs_report_end_to_end(tmp_path):
    make_sweep(tmp_path, n_done=4, n_failed=1)
    run = subprocess.run([sys.executable, "-m", "jobs.report", f"results_dir={tmp_path}", "sweep=demo", "n_boot=100"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    report = tmp_path / "sweeps" / "demo" / "report.html"
    assert run.stdout.strip().endswith(str(report)) and report.exists()
    missing = subprocess.run([sys.executable, "-m", "jobs.report", f"results_dir={tmp_path}", "sweep=nope"],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    typo = subprocess.run([sys.executable, "-m", "jobs.report", f"results_dir={tmp_path}", "swep=demo"],
                          capture_output=True, text=True, cwd=ROOT)
    assert typo.returncode == 2 and "unknown key 'swep'" in typo.stderr


def test_trends_and_reporting_keep_the_layering():
    code = ("import sys, uetool.core.trends, uetool.reporting;"
            "bad = [m for m in ('ray', 'torch', 'omegaconf', 'vllm', 'transformers') if m in sys.modules];"
            "core = 'matplotlib' in sys.modules;"
            "import importlib; sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    core_only = subprocess.run([sys.executable, "-c", "import sys, uetool.core.trends;"
                                "sys.exit('matplotlib' in sys.modules)"], capture_output=True, text=True)
    assert core_only.returncode == 0, "uetool.core.trends must not import matplotlib"


def test_report_draws_no_trend_across_elicitation_modes_unless_asked():
    from uetool.reporting.sweep_report import build_report_files

    rng = np.random.default_rng(0)
    records = []
    for i in range(7):
        metrics = _metrics(30.0 + 10 * i, rng) | {"mode": "logprob" if i < 3 else "sample"}
        records.append({"model": f"m{i}", "status": "done", "capability": 30.0 + 10 * i, "capability_name": "mmlu",
                        "metrics": metrics, "finished_at": "2026-11-26T00:00:00+00:00"})
    strict = build_report_files(records, {}, "modes", n_boot=50)
    trends = pd.read_csv(pd.io.common.BytesIO(strict["trends.csv"])).set_index("metric")
    assert trends.loc["holdout_accuracy", "n"] == 4  # the four sample-mode models only
    html = strict["report.html"].decode()
    assert "different modes (logprob: 3, sample: 4)" in html and "m0, m1, m2" in html
    mixed = build_report_files(records, {}, "modes", n_boot=50, mix_modes=True)
    assert pd.read_csv(pd.io.common.BytesIO(mixed["trends.csv"])).set_index("metric").loc["holdout_accuracy", "n"] == 7
    assert "different modes" not in mixed["report.html"].decode()


def test_report_shows_each_headline_metrics_ci():
    from uetool.reporting.sweep_report import build_report_files

    rng = np.random.default_rng(1)
    records = [{"model": f"m{i}", "status": "done", "capability": 40.0 + 10 * i, "capability_name": "mmlu",
                "metrics": _metrics(40.0 + 10 * i, rng) | {"holdout_accuracy_ci": [0.61 + i / 100, 0.93]},
                "finished_at": "2026-11-26T00:00:00+00:00"} for i in range(4)]
    html = build_report_files(records, {}, "cis", n_boot=50)["report.html"].decode()
    assert "holdout_accuracy 95% CI" in html and "0.610 to 0.930" in html and "0.640 to 0.930" in html
