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

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.results import resolve_filesystem
from ..engines.base import ElicitationResult, ResultBatch

__all__ = ["ResponseStore", "key_prefix"]

_SCHEMA = pa.schema([
    ("key", pa.string()), ("a", pa.int64()), ("b", pa.int64()), ("order", pa.int8()),
    ("texts", pa.list_(pa.string())), ("p_first", pa.float64()), ("p_second", pa.float64()),
    ("other_mass", pa.float64()), ("error", pa.string()), ("written_at", pa.float64()),
])


class key_prefix:  # noqa: N801 - used like a function that returns a reusable hasher
    """Request keys: everything fixed for a job hashed once, then each request's own part cheaply.

    The prompt a request shows is `template(first description, second description)` and the template's digest is in
    the fixed part, so a request's prompt is identified by the digests of its two descriptions; hashing those
    (16 bytes each) instead of the rendered prompt keeps keys cheap for hundreds of thousands of requests.
    """

    def __init__(self, *, model: str, revision: str | None, engine_settings: dict, template_digest: str,
                 system_message: str | None, k: int, seed: int, mode: str) -> None:
        payload = json.dumps({"model": model, "revision": revision, "engine": engine_settings,
                              "template": template_digest, "system": system_message, "k": k, "seed": seed,
                              "mode": mode, "key_format": 2}, sort_keys=True, default=str)
        self._secret = hashlib.blake2b(payload.encode(), digest_size=32).digest()

    @staticmethod
    def digests(descriptions: list[str]) -> np.ndarray:
        """(n, 16) uint8: one digest per outcome description."""
        out = np.empty((len(descriptions), 16), np.uint8)
        for i, text in enumerate(descriptions):
            out[i] = np.frombuffer(hashlib.blake2b(text.encode(), digest_size=16).digest(), np.uint8)
        return out

    def keys(self, digests: np.ndarray, first: np.ndarray, second: np.ndarray, order: np.ndarray) -> list[str]:
        """Keys of requests showing outcome `first[i]` then `second[i]` in `order[i]`."""
        rows = np.concatenate([digests[first], digests[second], np.asarray(order, np.uint8)[:, None]], axis=1)
        width, buf = rows.shape[1], memoryview(np.ascontiguousarray(rows).tobytes())
        secret, blake = self._secret, hashlib.blake2b
        return [blake(buf[i:i + width], key=secret, digest_size=16).hexdigest()
                for i in range(0, len(buf), width)]


class ResponseStore:
    """Append-only store of raw engine results for one model, cached in memory as columns."""

    def __init__(self, root: str, model: str) -> None:
        self.fs, base = resolve_filesystem(root)
        safe = model.replace("/", "__")
        self.path = f"{base}/responses/{safe}"
        self.fs.create_dir(self.path, recursive=True)
        self._index: dict[str, int] | None = None
        self._chunks: list[ResultBatch] = []
        self._merged: ResultBatch | None = None

    def _parts(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def _load(self) -> dict[str, int]:
        """Key -> row of the in-memory columns (first write wins; later duplicates, if any, are ignored)."""
        if self._index is None:
            self._index, self._chunks, self._merged = {}, [], None
            for part in self._parts():
                with self.fs.open_input_file(part) as f:
                    self._remember(_batch_from_table(pq.read_table(f)))
        return self._index

    def _remember(self, batch: ResultBatch, checked: bool = False) -> ResultBatch:
        """Add rows whose keys are new to the cache (`checked`: the caller knows they are); returns those rows."""
        index = self._index
        assert index is not None
        if not checked:
            fresh, seen = [], set()
            for i, key in enumerate(batch.keys):
                if key not in index and key not in seen:
                    seen.add(key)
                    fresh.append(i)
            if len(fresh) < len(batch):
                batch = _take(batch, fresh)
        offset = len(index)
        for i, key in enumerate(batch.keys):
            index[key] = offset + i
        if len(batch):
            self._chunks.append(batch)
            self._merged = None
        return batch

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def missing(self, keys: list[str]) -> list[int]:
        """Positions of `keys` that the store does not hold."""
        index = self._load()
        return [i for i, key in enumerate(keys) if key not in index]

    def get(self, keys: list[str]) -> ResultBatch:
        """Stored results for `keys`, in that order (KeyError names a missing key)."""
        index = self._load()
        try:
            rows = [index[key] for key in keys]
        except KeyError as err:
            raise KeyError(f"response {err.args[0]} is not in the store at {self.path}") from None
        if self._merged is None:
            self._merged = ResultBatch.concat(self._chunks)
            self._chunks = [self._merged]
        return _take(self._merged, rows)

    def load(self) -> dict[str, ElicitationResult]:
        """Every stored result by key (a per-object view for inspection; the runtime uses `get`)."""
        keys = list(self._load())
        return dict(zip(keys, self.get(keys).to_results(), strict=True))

    def count_rows(self) -> int:
        """Rows on disk, duplicates included (tests use it to prove nothing was stored twice)."""
        total = 0
        for part in self._parts():
            with self.fs.open_input_file(part) as f:
                total += pq.read_metadata(f).num_rows
        return total

    def append(self, batch: ResultBatch) -> int:
        """Durably write the results not yet stored (temp file + rename), then cache them; returns how many."""
        self._load()
        index = self._index
        assert index is not None
        fresh, seen = [], set()
        for i, key in enumerate(batch.keys):  # not stored yet; a key repeated within the batch counts once
            if key not in index and key not in seen:
                seen.add(key)
                fresh.append(i)
        if not fresh:
            return 0
        rows = batch if len(fresh) == len(batch) else _take(batch, fresh)
        table = pa.table({
            "key": rows.keys, "a": np.asarray(rows.a, np.int64), "b": np.asarray(rows.b, np.int64),
            "order": np.asarray(rows.order, np.int8), "texts": _text_lists(rows.texts),
            "p_first": _nullable(rows.p_first), "p_second": _nullable(rows.p_second),
            "other_mass": _nullable(rows.other_mass), "error": rows.errors,
            "written_at": np.full(len(rows), time.time()),
        }, schema=_SCHEMA)
        name = f"{self.path}/part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = f"{self.path}/.{name.rsplit('/', 1)[1]}.tmp"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        with self.fs.open_output_stream(tmp) as out:
            out.write(sink.getvalue().to_pybytes())
        self.fs.move(tmp, name)
        return len(self._remember(rows, checked=True))


def _text_lists(texts: list[list[str | None]]) -> pa.Array:
    """list<string> column built from one flat string array and offsets (much cheaper than nested conversion)."""
    lengths = np.fromiter(map(len, texts), np.int32, len(texts))
    offsets = np.zeros(len(texts) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array([t for row in texts for t in row], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _nullable(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, float)
    return pa.array(values, mask=np.isnan(values), type=pa.float64())


def _take(batch: ResultBatch, rows: list[int]) -> ResultBatch:
    idx = np.asarray(rows, np.int64)
    return ResultBatch([batch.keys[i] for i in rows], batch.a[idx], batch.b[idx], batch.order[idx],
                       [batch.texts[i] for i in rows], batch.p_first[idx], batch.p_second[idx],
                       batch.other_mass[idx], [batch.errors[i] for i in rows])


def _batch_from_table(table: pa.Table) -> ResultBatch:
    def floats(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False).astype(float)  # nulls become NaN

    texts = [t or [] for t in table.column("texts").to_pylist()]
    return ResultBatch(table.column("key").to_pylist(), table.column("a").to_numpy(), table.column("b").to_numpy(),
                       table.column("order").to_numpy().astype(np.int8), texts, floats("p_first"),
                       floats("p_second"), floats("other_mass"), table.column("error").to_pylist())
