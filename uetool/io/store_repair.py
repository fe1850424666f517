"""Checking and repairing everything a results root holds for resuming: response stores and checkpoints.

`scan` lists each file that cannot be used (a truncated or foreign part, a damaged checkpoint) and the temporary
files writers left; `repair` moves the damaged files into `<root>/quarantine/<UTC time>/` (never deletes them),
removes leftover temporary files of stores no job holds, and says how many answers the next run must ask again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from .checkpoint import check_checkpoint
from .files import read_bytes
from .layout import ResultsLayout
from .store import PartProblem, ResponseStore
from .store_lock import StoreLocked

__all__ = ["StoreReport", "scan", "repair"]


@dataclass
class StoreReport:
    root: str
    stores: int = 0
    parts: int = 0
    damaged: list[PartProblem] = field(default_factory=list)  # parts and checkpoints
    temporary: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)  # (from, to)
    removed_temporary: int = 0
    skipped_locked: list[str] = field(default_factory=list)

    @property
    def answers_lost(self) -> int | None:
        """Rows of the damaged parts (what the next run asks again); None if some part's count is unknown."""
        rows = [p.rows for p in self.damaged if not p.path.endswith("checkpoint.npz")]
        return None if any(r is None for r in rows) else sum(rows)

    def lines(self) -> list[str]:
        out = [f"{self.root}: {self.stores} response store(s), {self.parts} part(s)"]
        out += [f"  damaged: {p.path}: {p.reason}" + (f" ({p.rows} rows)" if p.rows is not None else "")
                for p in self.damaged]
        out += [f"  leftover temporary file: {t}" for t in self.temporary]
        out += [f"  moved aside: {a} -> {b}" for a, b in self.moved]
        if self.removed_temporary:
            out.append(f"  removed {self.removed_temporary} leftover temporary file(s)")
        out += [f"  not touched, a job holds it: {s}" for s in self.skipped_locked]
        if self.damaged:
            lost = self.answers_lost
            out.append(f"  answers to ask again: {'unknown (a part was unreadable)' if lost is None else lost}"
                       + ("; checkpoints set aside: those runs start over, reusing every stored answer"
                          if any(p.path.endswith("checkpoint.npz") for p in self.damaged) else ""))
        elif not self.temporary:
            out.append("  everything is usable")
        return out


def _stores(layout: ResultsLayout) -> list[ResponseStore]:
    fs, base = layout.filesystem
    infos = fs.get_file_info(pafs.FileSelector(f"{base}/responses", allow_not_found=True))
    return [ResponseStore(layout, i.base_name) for i in infos if i.type == pafs.FileType.Directory]


def _checkpoints(layout: ResultsLayout) -> list[str]:
    fs, base = layout.filesystem
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name == "checkpoint.npz"
                  and "/quarantine/" not in i.path)


def scan(root: str) -> StoreReport:
    layout = ResultsLayout(root)
    fs = layout.filesystem[0]
    report = StoreReport(root)
    for store in _stores(layout):
        problems, temporary = store.check()
        report.stores += 1
        report.parts += len(store.parts())
        report.damaged += problems
        report.temporary += temporary
    for path in _checkpoints(layout):
        try:
            check_checkpoint(read_bytes(fs, path))
        except ValueError as err:
            report.damaged.append(PartProblem(path, f"damaged checkpoint: {err}"))
    return report


def repair(root: str) -> StoreReport:
    """Move damaged parts and checkpoints aside and remove leftover temporary files (of stores no job holds)."""
    layout = ResultsLayout(root)
    fs, base = layout.filesystem
    report = scan(root)
    quarantine = f"{base}/quarantine/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    locked: set[str] = set()
    for store in _stores(layout):
        try:
            with store.hold(wait_s=0):
                report.removed_temporary += store.remove_temporary_files()
        except StoreLocked:
            locked.add(store.path)
            report.skipped_locked.append(store.path)
    for problem in report.damaged:
        if any(problem.path.startswith(f"{path}/") for path in locked):
            continue
        target = f"{quarantine}/{problem.path[len(base):].lstrip('/')}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        fs.move(problem.path, target)
        report.moved.append((problem.path, target))
    return report
