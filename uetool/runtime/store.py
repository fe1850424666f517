"""Durable, append-only response store (Parquet parts under a local path or any pyarrow filesystem URI).

Layout: `<root>/responses/<model>/part-<unix_ns>-<uuid>.parquet`, one part per flushed batch. A part is written
to a temporary name and renamed, so a killed job never leaves a torn file under a real name; the reader ignores
temporary files. One row per request key (see `key_prefix`): the key hashes everything that changes the answer
(model id + revision, engine settings, template, system message, prompt, order, k, seed), so re-running a config
reuses every stored answer and a changed setting never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.results import resolve_filesystem
from ..engines.base import ElicitationResult

__all__ = ["ResponseStore", "key_prefix"]

_SCHEMA = pa.schema([
    ("key", pa.string()), ("a", pa.int64()), ("b", pa.int64()), ("order", pa.int8()),
    ("texts", pa.list_(pa.string())), ("p_first", pa.float64()), ("p_second", pa.float64()),
    ("other_mass", pa.float64()), ("error", pa.string()), ("written_at", pa.float64()),
])


class key_prefix:  # noqa: N801 - used like a function that returns a reusable hasher
    """The fixed part of request keys hashed once; `.key(prompt, order)` finishes one key cheaply."""

    def __init__(self, *, model: str, revision: str | None, engine_settings: dict, template_digest: str,
                 system_message: str | None, k: int, seed: int, mode: str) -> None:
        payload = json.dumps({"model": model, "revision": revision, "engine": engine_settings,
                              "template": template_digest, "system": system_message, "k": k, "seed": seed,
                              "mode": mode}, sort_keys=True, default=str)
        self._base = hashlib.sha256(payload.encode())

    def key(self, prompt: str, order: int) -> str:
        h = self._base.copy()
        h.update(f"\x1f{order}\x1f{prompt}".encode())
        return h.hexdigest()


class ResponseStore:
    """Append-only store of raw engine results for one model."""

    def __init__(self, root: str, model: str) -> None:
        self.fs, base = resolve_filesystem(root)
        safe = model.replace("/", "__")
        self.path = f"{base}/responses/{safe}"
        self.fs.create_dir(self.path, recursive=True)
        self._cache: dict[str, ElicitationResult] | None = None

    def _parts(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def load(self) -> dict[str, ElicitationResult]:
        """All stored results by key (first write wins; later duplicates, if any, are ignored)."""
        if self._cache is None:
            cache: dict[str, ElicitationResult] = {}
            for part in self._parts():
                with self.fs.open_input_file(part) as f:
                    table = pq.read_table(f)
                for row in table.to_pylist():
                    if row["key"] in cache:
                        continue
                    probs = None if row["p_first"] is None else (row["p_first"], row["p_second"])
                    cache[row["key"]] = ElicitationResult(row["key"], texts=row["texts"] or [], probs=probs,
                                                          other_mass=row["other_mass"], error=row["error"])
            self._cache = cache
        return self._cache

    def __len__(self) -> int:
        return len(self.load())

    def count_rows(self) -> int:
        """Rows on disk, duplicates included (tests use it to prove nothing was stored twice)."""
        total = 0
        for part in self._parts():
            with self.fs.open_input_file(part) as f:
                total += pq.read_metadata(f).num_rows
        return total

    def append(self, results: Iterable[ElicitationResult], bookkeeping: dict[str, tuple[int, int, int]]) -> int:
        """Durably write results not yet stored; returns how many were written."""
        known = self.load()
        rows = [r for r in results if r.key not in known]
        if not rows:
            return 0
        now = time.time()
        table = pa.table({
            "key": [r.key for r in rows],
            "a": [bookkeeping[r.key][0] for r in rows],
            "b": [bookkeeping[r.key][1] for r in rows],
            "order": [bookkeeping[r.key][2] for r in rows],
            "texts": [list(r.texts) for r in rows],
            "p_first": [None if r.probs is None else float(r.probs[0]) for r in rows],
            "p_second": [None if r.probs is None else float(r.probs[1]) for r in rows],
            "other_mass": [r.other_mass for r in rows],
            "error": [r.error for r in rows],
            "written_at": [now] * len(rows),
        }, schema=_SCHEMA)
        name = f"{self.path}/part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = f"{self.path}/.{name.rsplit('/', 1)[1]}.tmp"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        with self.fs.open_output_stream(tmp) as out:
            out.write(sink.getvalue().to_pybytes())
        self.fs.move(tmp, name)
        for r in rows:
            known[r.key] = r
        return len(rows)
