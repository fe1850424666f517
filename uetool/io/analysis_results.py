"""Result files of one analysis run (layout in README, "Results"), readable with pandas alone.

    utilities.parquet  option_set, id, description, category, mean, variance (one row per option of every set)
    edges.parquet      the preference graphs' edges, with their option_set
    items.parquet      the analysis's per-item table (lotteries, events, options of processes, questions)
    metrics.json       coherence of the fits, what was asked and reused, and the headline metrics
    analysis.json      the headline metrics with their 95% CIs and the analysis settings
    analysis.png       the analysis's picture
    summary.txt, config.yaml, provenance.json
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .files import write_atomic
from .results import json_safe, results_metrics

__all__ = ["write_analysis_results", "read_analysis", "read_items", "write_parquet"]


def write_parquet(fs, path: str, frame: pd.DataFrame) -> None:
    """One frame as one Parquet file, written atomically (pandas reads it back as is)."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    write_atomic(fs, path, sink.getvalue().to_pybytes())


def write_analysis_results(fs, out_dir: str, utilities: pd.DataFrame, edges: pd.DataFrame, metrics: dict,
                           headline: dict, items: pd.DataFrame, config_yaml: str, provenance: dict,
                           set_column: str | None = None) -> None:
    """Write the data files (the runtime adds analysis.png and summary.txt, for people, after them). With
    `set_column` (the items column naming each row's option set), every option set also gets its own folder
    `<out_dir>/<set>/` with its rows of `utilities`, `edges` and `items` (sets fitted in this run only)."""
    fs.create_dir(out_dir, recursive=True)
    write_parquet(fs, f"{out_dir}/utilities.parquet", utilities)
    write_parquet(fs, f"{out_dir}/edges.parquet", edges)
    write_parquet(fs, f"{out_dir}/items.parquet", items)
    if set_column is not None:
        fitted = set(utilities["option_set"])  # rows carried from another run (a reference) get no folder
        for name in [n for n in items[set_column].unique().tolist() if n in fitted]:
            fs.create_dir(f"{out_dir}/{name}", recursive=True)
            for file, frame, column in (("utilities", utilities, "option_set"), ("edges", edges, "option_set"),
                                        ("items", items, set_column)):
                write_parquet(fs, f"{out_dir}/{name}/{file}.parquet",
                              frame[frame[column] == name].reset_index(drop=True))
    write_atomic(fs, f"{out_dir}/metrics.json", json.dumps(json_safe(results_metrics(metrics)), indent=2).encode())
    write_atomic(fs, f"{out_dir}/analysis.json", json.dumps(json_safe(headline), indent=2).encode())
    write_atomic(fs, f"{out_dir}/provenance.json", json.dumps(json_safe(provenance), indent=2).encode())
    write_atomic(fs, f"{out_dir}/config.yaml", config_yaml.encode())


def read_items(fs, out_dir: str) -> pd.DataFrame:
    """items.parquet of a results folder on any filesystem."""
    import pyarrow.parquet as pq

    with fs.open_input_file(f"{out_dir}/items.parquet") as f:
        return pq.read_table(f).to_pandas()


def read_analysis(out_dir: str) -> tuple[dict, pd.DataFrame]:
    """(analysis.json, items.parquet) of a local results folder."""
    with open(f"{out_dir}/analysis.json", encoding="utf-8") as f:
        headline = json.load(f)
    return headline, pd.read_parquet(f"{out_dir}/items.parquet")
