"""Where every result lives under one results root: the single spelling of the results layout.

    <root>/<experiment>/<model>/[<run>/]     one run's result files (several runs per model where an analysis
                                             fits one utility function per entity, category, variant or seed)
    <root>/responses/<model>/                the model's response store (append-only Parquet parts)
    <root>/sweeps/<sweep>/                   a sweep's records (models/<model>.json), tables and report

The root is a local path or any pyarrow filesystem URI (s3://..., gs://...). Every reader and writer asks this
object for its paths; nothing else joins them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow.fs as pafs

from .files import resolve_filesystem

__all__ = ["ResultsLayout", "check_name"]


_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_name(value: str, what: str) -> str:
    """A name used as one directory level (model keys, experiments, sweeps, runs): letters, digits, '.', '_' and
    '-' only, and no '..', so that no name from a config or a sweep entry can reach outside the results root."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} must be a plain name of letters, digits, '.', '_' and '-' (no '..'), "
                         f"got {value!r}")
    return value


@dataclass(frozen=True)
class ResultsLayout:
    root: str  # as the user gave it (kept for messages and records)

    @property
    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """(filesystem, root path on it)."""
        fs, base = resolve_filesystem(self.root)
        return fs, base.rstrip("/") or "/"

    def relative_run_dir(self, experiment: str, model: str, run: str | None = None) -> str:
        """`<experiment>/<model>[/<run>]`, relative to the root (what sweep records store)."""
        parts = [check_name(experiment, "experiment name"), check_name(model, "model key")]
        if run is not None:
            parts.append(check_name(run, "run name"))
        return "/".join(parts)

    def run_dir(self, experiment: str, model: str, run: str | None = None) -> str:
        """Absolute path (on `filesystem`) of one run's results."""
        return f"{self.filesystem[1]}/{self.relative_run_dir(experiment, model, run)}"

    def checkpoint(self, experiment: str, model: str, run: str | None = None) -> str:
        """A run's resume state (active-learning rounds), beside its results."""
        return f"{self.run_dir(experiment, model, run)}/checkpoint.npz"

    def resolve(self, relative: str) -> str:
        """A path stored relative to the root (e.g. a sweep record's results_dir) on the root's filesystem."""
        return f"{self.filesystem[1]}/{relative.strip('/')}"

    def responses_dir(self, model: str) -> str:
        return f"{self.filesystem[1]}/responses/{check_name(model, 'model key')}"

    def sweep_dir(self, sweep: str) -> str:
        return f"{self.filesystem[1]}/sweeps/{check_name(sweep, 'sweep name')}"

    def sweep_records_dir(self, sweep: str) -> str:
        return f"{self.sweep_dir(sweep)}/models"

    def sweep_analysis_records_dir(self, sweep: str, experiment: str) -> str:
        """Records of an analysis's runs in a sweep (one JSON per model), beside the compute_utilities ones."""
        return f"{self.sweep_dir(sweep)}/analyses/{check_name(experiment, 'experiment name')}"

    def sweep_analysis_record(self, sweep: str, experiment: str, model: str) -> str:
        return f"{self.sweep_analysis_records_dir(sweep, experiment)}/{check_name(model, 'model key')}.json"

    def sweep_record(self, sweep: str, model: str) -> str:
        return f"{self.sweep_records_dir(sweep)}/{check_name(model, 'model key')}.json"
