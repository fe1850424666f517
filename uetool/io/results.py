"""Result files of one (experiment, model) run, readable with pandas alone (layout in README, "Results").

    utilities.parquet  id, description, category, mean, variance, ci_low, ci_high
    edges.parquet      a, b, n_a_orig, n_b_orig, n_a_flip, n_b_flip, n_unparseable, n_refusal, p_a, split, round
    metrics.json       METRIC_KEYS and more: what the results say, the same for every run that finds them finished
    runs.jsonl         one line per invocation: what it asked, reused and failed, its wall time (INVOCATION_KEYS)
    config.yaml        the resolved config (written by the job layer)

Paths may be local or any pyarrow filesystem URI (s3://..., gs://..., file://...).
Also imports the reference implementation's `results_*.json` so published utilities can be compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.graph import PreferenceGraph
from ..core.outcomes import OutcomeSet
from ..core.thurstonian import ThurstonianFit
from .files import resolve_filesystem, write_atomic

__all__ = ["METRIC_KEYS", "INVOCATION_KEYS", "RunResults", "write_results", "read_results",
           "import_reference_results", "utilities_frame", "json_safe", "write_triads", "results_metrics",
           "append_run_log"]

METRIC_KEYS = ("n_outcomes", "n_edges", "holdout_accuracy", "holdout_log_loss", "train_accuracy",
               "average_confidence", "log10_cycle_probability", "hard_cycle_rate", "unparseable_rate",
               "refusal_rate", "position_bias", "seed")


# counters of one invocation, not of the results: a re-run that finds everything stored asks nothing, so these
# live in runs.jsonl and metrics.json stays byte-identical across re-runs
INVOCATION_KEYS = ("asked_requests", "reused_requests", "failed_requests", "given_up_requests", "failed_request_rate",
                   "failure_examples", "engine_retries")


def results_metrics(metrics: dict) -> dict:
    """`metrics` without the per-invocation counters (what metrics.json holds)."""
    return {k: v for k, v in metrics.items() if k not in INVOCATION_KEYS}


def append_run_log(fs: pafs.FileSystem, path: str, entry: dict) -> None:
    """Add one JSON line to `<path>/runs.jsonl` (rewritten whole: object stores cannot append)."""
    log = f"{path}/runs.jsonl"
    before = b""
    if fs.get_file_info(log).type == pafs.FileType.File:
        with fs.open_input_stream(log) as f:
            before = f.read()
    line = json.dumps(json_safe(entry), sort_keys=True).encode() + b"\n"
    write_atomic(fs, log, before + line)


def json_safe(value):
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null means "not defined for this run"
    return value


@dataclass
class RunResults:
    utilities: pd.DataFrame
    edges: pd.DataFrame
    metrics: dict
    config: str | None = None
    provenance: dict | None = None


def utilities_frame(outcomes: OutcomeSet, fit: ThurstonianFit, ci_low: np.ndarray | None = None,
                    ci_high: np.ndarray | None = None) -> pd.DataFrame:
    frame = outcomes.to_frame()
    frame["mean"] = fit.mean
    frame["variance"] = fit.variance
    frame["ci_low"] = np.full(len(frame), np.nan) if ci_low is None else ci_low
    frame["ci_high"] = np.full(len(frame), np.nan) if ci_high is None else ci_high
    return frame


def write_results(root: str | Path, utilities: pd.DataFrame, graph: PreferenceGraph, metrics: dict,
                  config_yaml: str | None = None, unparseable_policy: str = "distribution", *,
                  provenance: dict | None = None, fs: pafs.FileSystem | None = None, mode: str = "sample") -> str:
    """Write the result files into directory `root` (created if needed); returns the directory.

    `fs`: the filesystem `root` is a path on (e.g. from `ResultsLayout.filesystem`, whose paths carry no URI
    scheme); without it `root` is a local path or a URI."""
    fs, path = (fs, str(root)) if fs is not None else resolve_filesystem(root)
    fs.create_dir(path, recursive=True)
    missing = [k for k in METRIC_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"metrics lack required keys {missing}")
    edges = graph.to_frame(unparseable_policy)
    if mode == "logprob":  # the next-token mass on neither label, averaged over the two orders
        asked = edges[["n_a_orig", "n_b_orig", "n_a_flip", "n_b_flip", "n_unparseable"]].sum(axis=1)
        edges["other_mass"] = np.where(asked > 0, edges["n_unparseable"] / asked.where(asked > 0, 1), np.nan)
    for name, frame in (("utilities", utilities), ("edges", edges)):
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        write_atomic(fs, f"{path}/{name}.parquet", sink.getvalue().to_pybytes())
    write_atomic(fs, f"{path}/metrics.json", json.dumps(json_safe(results_metrics(metrics)), indent=2).encode())
    if provenance is not None:
        write_atomic(fs, f"{path}/provenance.json", json.dumps(json_safe(provenance), indent=2).encode())
    if config_yaml is not None:
        write_atomic(fs, f"{path}/config.yaml", config_yaml.encode())
    return path


def write_triads(fs: pafs.FileSystem, path: str, frame: pd.DataFrame) -> str:
    """triads.parquet: one row per asked triad (a, b, c, p_ab, p_bc, p_ac, p_cycle, hard_cycle)."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    write_atomic(fs, f"{path}/triads.parquet", sink.getvalue().to_pybytes())
    return f"{path}/triads.parquet"


def read_results(root: str | Path, fs: pafs.FileSystem | None = None) -> RunResults:
    """A run's results folder (a local path or a URI; or a path on `fs`)."""
    fs, path = (fs, str(root)) if fs is not None else resolve_filesystem(root)

    def read_table(name: str) -> pd.DataFrame:
        with fs.open_input_file(f"{path}/{name}.parquet") as f:
            return pq.read_table(f).to_pandas()

    with fs.open_input_stream(f"{path}/metrics.json") as f:
        metrics = json.loads(f.read().decode())
    config = None
    if fs.get_file_info(f"{path}/config.yaml").type == pafs.FileType.File:
        with fs.open_input_stream(f"{path}/config.yaml") as f:
            config = f.read().decode()
    provenance = None
    if fs.get_file_info(f"{path}/provenance.json").type == pafs.FileType.File:
        with fs.open_input_stream(f"{path}/provenance.json") as f:
            provenance = json.loads(f.read().decode())
    return RunResults(read_table("utilities"), read_table("edges"), metrics, config, provenance)


def import_reference_results(path: str | Path) -> RunResults:
    """Read the reference implementation's `results_utilities_<model>.json`.

    Its layout: `options` (list of {id, description}), `utilities` ({id: {mean, variance}}), `metrics` and
    `holdout_metrics` ({log_loss, accuracy}). Means are re-standardised (mean 0, std 1) like uetool's.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or "options" not in data or "utilities" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not a reference results file (needs 'options' and 'utilities'; found {keys})")
    rows = []
    for option in data["options"]:
        key = str(option["id"])
        if key not in data["utilities"]:
            raise ValueError(f"{path}: option id {key} has no entry in 'utilities'")
        entry = data["utilities"][key]
        rows.append({"id": key, "description": option["description"], "category": option.get("category", ""),
                     "mean": float(entry["mean"]), "variance": float(entry["variance"])})
    frame = pd.DataFrame(rows)
    scale = frame["mean"].std(ddof=0) or 1.0
    frame["mean"] = (frame["mean"] - frame["mean"].mean()) / scale
    frame["variance"] = frame["variance"] / scale**2
    frame["ci_low"] = np.nan
    frame["ci_high"] = np.nan
    train, hold = data.get("metrics", {}), data.get("holdout_metrics", {})
    metrics = {"n_outcomes": len(frame), "train_accuracy": train.get("accuracy"),
               "train_log_loss": train.get("log_loss"), "holdout_accuracy": hold.get("accuracy"),
               "holdout_log_loss": hold.get("log_loss"), "source": str(path)}
    return RunResults(frame, pd.DataFrame(), metrics, None)
