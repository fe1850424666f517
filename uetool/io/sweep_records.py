"""Reading a sweep's records back: `<results_root>/sweeps/<sweep>/models/<model>.json` and each finished model's
utilities (the record format is documented in `uetool.core.trends`)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.trends import check_record
from .files import file_exists
from .layout import ResultsLayout

__all__ = ["load_sweep", "sweep_dir", "load_analysis_records", "load_edges", "load_analysis_items"]

def sweep_dir(results_root: str, sweep_name: str) -> str:
    """`<results_root>/sweeps/<sweep_name>` as a path on the root's filesystem (local path or URI)."""
    return ResultsLayout(str(results_root)).sweep_dir(sweep_name)


def _read_json(fs: pafs.FileSystem, path: str) -> object:
    with fs.open_input_stream(path) as f:
        text = f.read().decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON ({err})") from err


def load_sweep(results_root: str, sweep_name: str) -> tuple[list[dict], dict[str, pd.DataFrame]]:
    """The sweep's model records (sorted by model key) and each finished model's utilities.

    A "done" record whose utilities.parquet is missing is kept but flagged: its `note` says what is missing and
    it has no utilities entry. A done record with `metrics: null` takes metrics.json from its results directory.
    Raises FileNotFoundError when the sweep has no records, ValueError naming the file of a malformed record.
    """
    layout = ResultsLayout(str(results_root))
    fs = layout.filesystem[0]
    base = layout.sweep_dir(sweep_name)
    models_dir = layout.sweep_records_dir(sweep_name)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"sweep directory {base} does not exist")
    if fs.get_file_info(models_dir).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"sweep {sweep_name!r} has no model records: {models_dir} does not exist")
    # Only *.json: atomic writers leave "<name>.json.<suffix>.tmp" files mid-write.
    paths = sorted(info.path for info in fs.get_file_info(pafs.FileSelector(models_dir))
                   if info.type == pafs.FileType.File and info.path.endswith(".json"))
    if not paths:
        raise FileNotFoundError(f"sweep {sweep_name!r} has no model records in {models_dir}")
    records, utilities = [], {}
    for path in paths:
        record = dict(check_record(_read_json(fs, path), path))
        if record["status"] != "done":
            records.append(record)
            continue
        rel = record.get("results_dir")
        if not isinstance(rel, str) or not rel:
            record["note"] = "record has no results_dir"
            records.append(record)
            continue
        results = layout.resolve(rel)
        if record.get("metrics") is None and file_exists(fs, f"{results}/metrics.json"):
            record["metrics"] = _read_json(fs, f"{results}/metrics.json")
        if file_exists(fs, f"{results}/utilities.parquet"):
            with fs.open_input_file(f"{results}/utilities.parquet") as f:
                utilities[record["model"]] = pq.read_table(f).to_pandas()
        else:
            record["note"] = f"results missing: {results}/utilities.parquet"
            warnings.warn(f"sweep {sweep_name!r}: model {record['model']!r} is done but {results}/utilities.parquet "
                          "is missing; it is left out of the utility analyses", stacklevel=2)
        records.append(record)
    keys = [r["model"] for r in records]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{models_dir}: several record files name the same model {duplicates}")
    return sorted(records, key=lambda r: r["model"]), utilities


def load_analysis_records(results_root: str, sweep_name: str) -> dict[str, list[dict]]:
    """{experiment: records sorted by model} of the sweep's analysis runs (`sweeps/<sweep>/analyses/<experiment>/
    <model>.json`); a finished record without its `analysis` headline takes analysis.json from its results."""
    layout = ResultsLayout(str(results_root))
    fs = layout.filesystem[0]
    base = f"{layout.sweep_dir(sweep_name)}/analyses"
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return {}
    out: dict[str, list[dict]] = {}
    for info in sorted(fs.get_file_info(pafs.FileSelector(base)), key=lambda i: i.base_name):
        if info.type != pafs.FileType.Directory:
            continue
        records = []
        for entry in sorted(fs.get_file_info(pafs.FileSelector(info.path)), key=lambda i: i.base_name):
            if entry.type != pafs.FileType.File or not entry.path.endswith(".json"):
                continue
            record = dict(check_record(_read_json(fs, entry.path), entry.path))
            if record["status"] == "done" and not record.get("analysis") and record.get("results_dir"):
                path = f"{layout.resolve(record['results_dir'])}/analysis.json"
                if file_exists(fs, path):
                    record["analysis"] = _read_json(fs, path)
            records.append(record)
        if records:
            out[info.base_name] = records
    return out


def _load_result_files(results_root: str, records: list[dict], name: str,
                       columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """`<results_dir>/<name>` of each finished record, by model (records without one are left out)."""
    layout = ResultsLayout(str(results_root))
    fs = layout.filesystem[0]
    out = {}
    for record in records:
        if record.get("status") != "done" or not record.get("results_dir"):
            continue
        path = f"{layout.resolve(record['results_dir'])}/{name}"
        if file_exists(fs, path):
            with fs.open_input_file(path) as f:
                out[record["model"]] = pq.read_table(f, columns=columns).to_pandas()
    return out


def load_edges(results_root: str, records: list[dict]) -> dict[str, pd.DataFrame]:
    """Each finished model's edges.parquet (for the per-category coherence); models without one are left out."""
    return _load_result_files(results_root, records, "edges.parquet", ["a", "b", "p_a", "split"])


def load_analysis_items(results_root: str, records: list[dict]) -> dict[str, pd.DataFrame]:
    """Each finished analysis run's items.parquet, by model (runs without one are left out)."""
    return _load_result_files(results_root, records, "items.parquet")
