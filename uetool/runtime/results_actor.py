"""The results actor: a named Ray actor that owns a sweep's cross-model view.

Each finished (or failed) model's record is persisted to `<root>/sweeps/<sweep>/models/<model>.json` (write, then
rename) before the call returns, and the model's utilities are read back from its results directory. The actor
keeps nothing that is not on disk: created again after a crash or `ray.kill`, it rebuilds its state from the
results root, so a restart loses nothing. It is wrapped with `ray.remote` by `uetool.runtime.sweep`.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.trends import metrics_table, trend_statistics, utility_convergence
from ..io.files import write_atomic
from ..io.layout import ResultsLayout
from ..io.sweep_records import load_analysis_records, load_sweep

__all__ = ["ResultsActor"]


class ResultsActor:
    def __init__(self, results_root: str, sweep: str, seed: int = 0, n_boot: int = 1000,
                 mix_modes: bool = False) -> None:
        self.results_root, self.sweep, self.seed, self.n_boot = str(results_root), sweep, seed, n_boot
        self.mix_modes = bool(mix_modes)
        self._layout = ResultsLayout(self.results_root)
        self._fs = self._layout.filesystem[0]
        self._models_dir = self._layout.sweep_records_dir(sweep)
        self._fs.create_dir(self._models_dir, recursive=True)
        self.records: dict[str, dict] = {}
        self.utilities: dict[str, pd.DataFrame] = {}
        try:
            records, self.utilities = load_sweep(self.results_root, sweep)
            self.records = {r["model"]: r for r in records}
        except FileNotFoundError:
            pass  # a new sweep (or one that runs analyses only)
        # (experiment, model) -> record of an analysis run
        found = load_analysis_records(self.results_root, sweep)
        self.analyses: dict[tuple[str, str], dict] = {(e, r["model"]): r for e, rs in found.items() for r in rs}

    def record(self, record: dict) -> int:
        """Persist one model's record (replacing an earlier one) and take its utilities; returns #records."""
        model = record["model"]
        data = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
        write_atomic(self._fs, self._layout.sweep_record(self.sweep, model), data)
        self.records[model] = json.loads(data)
        self.utilities.pop(model, None)
        if record["status"] == "done":
            path = f"{self._layout.resolve(record['results_dir'])}/utilities.parquet"
            if self._fs.get_file_info(path).type == pafs.FileType.File:
                with self._fs.open_input_file(path) as f:
                    self.utilities[model] = pq.read_table(f).to_pandas()
        return len(self.records)

    def record_analysis(self, record: dict) -> int:
        """Persist one analysis run's record (replacing an earlier one); returns #analysis records."""
        path = self._layout.sweep_analysis_record(self.sweep, record["experiment"], record["model"])
        data = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
        self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        write_atomic(self._fs, path, data)
        self.analyses[(record["experiment"], record["model"])] = json.loads(data)
        return len(self.analyses)

    def finished_analyses(self) -> dict[str, str]:
        """"<experiment>/<model>" -> config fingerprint, for analysis runs that finished."""
        return {f"{e}/{m}": str(r.get("fingerprint")) for (e, m), r in self.analyses.items() if r["status"] == "done"}

    def analysis_records(self) -> list[dict]:
        return [self.analyses[k] for k in sorted(self.analyses)]

    def finished(self) -> dict[str, str]:
        """model -> config fingerprint, for models that finished and whose utilities exist."""
        return {m: str(r.get("fingerprint")) for m, r in self.records.items()
                if r["status"] == "done" and m in self.utilities}

    def all_records(self) -> list[dict]:
        return [self.records[m] for m in sorted(self.records)]

    def table(self) -> pd.DataFrame:
        """One row per model with its capability score and metrics."""
        return metrics_table(self.all_records()) if self.records else pd.DataFrame()

    def trends(self) -> pd.DataFrame:
        """Every metric against capability: Pearson and Spearman with bootstrap CIs."""
        return trend_statistics(self.table(), n_boot=self.n_boot, seed=self.seed) if self.records else pd.DataFrame()

    def convergence(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Cosine similarity of utilities (models by capability) and std against the 4 nearest neighbours."""
        capability = {m: r.get("capability") for m, r in self.records.items()}
        return utility_convergence({m: u for m, u in self.utilities.items() if m in capability}, capability)

    def write_report(self) -> str:
        from ..reporting import write_sweep_report

        return str(write_sweep_report(self.results_root, self.sweep, seed=self.seed, n_boot=self.n_boot,
                                      mix_modes=self.mix_modes))

    def where(self) -> tuple[str, str]:
        return self.results_root, self.sweep

    def pid(self) -> int:
        return os.getpid()


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    return str(value)
