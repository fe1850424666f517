"""Durable, append-only response store (Parquet parts under a local path or any pyarrow filesystem URI).

Layout: `<root>/responses/<model>/part-<unix_ns>-<uuid>.parquet`, one part per flushed batch. A part is written
to a temporary name and renamed, so a killed job never leaves a torn file under a real name; the reader ignores
temporary files. One answer per request key (see `key_prefix`): the key hashes everything that changes the answer
(model id + revision, engine settings, template, system message, prompt, order, k, seed), so re-running a config
reuses every stored answer and a changed setting never reuses a stale one.

A failed request (its `error` set: an API outage, say) is stored too, as a record of the failed attempt, never as
an answer: the store does not serve it, so it is asked again, and `attempts(keys)` counts the failures of each key
so that a caller can stop asking after a few.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..engines.base import TOKEN_COLUMNS, ElicitationResult, ResultBatch
from ..engines.replies import Replies
from .files import remove_temporary_files, temporary_files, write_atomic
from .layout import ResultsLayout
from .result_columns import ResultColumns
from .store_lock import hold_store_lock

__all__ = ["ResponseStore", "StoreWriteError", "StoreDamaged", "PartProblem", "key_prefix", "SCHEMA_VERSION"]

# written into every part's Parquet metadata; parts without it (older uetool) are read by their columns
SCHEMA_VERSION = 2  # 2: token counts per response (prompt_tokens, cached_tokens, generated_tokens)
_VERSION_KEY = b"uetool.store_schema"
_REQUIRED = ("key", "a", "b", "order", "texts", "error")  # older parts may lack the others (read as missing values)

# texts: each request's samples, dictionary-coded (each distinct reply once per column chunk); older parts with
# plain list<string> texts read the same way
_SCHEMA = pa.schema([
    ("key", pa.string()), ("a", pa.int64()), ("b", pa.int64()), ("order", pa.int8()),
    ("texts", pa.list_(pa.dictionary(pa.int32(), pa.string()))), ("p_first", pa.float64()),
    ("p_second", pa.float64()), ("other_mass", pa.float64()), ("error", pa.string()), ("written_at", pa.float64()),
    *((name, pa.int64()) for name in TOKEN_COLUMNS),  # null where the engine does not count tokens
])


# per Parquet leaf column (texts is written as texts.list.element); random hex keys stay uncompressed (see _write)
_COMPRESSION = {"texts.list.element" if name == "texts" else name: "none" if name == "key" else "snappy"
                for name in _SCHEMA.names}


class key_prefix:  # noqa: N801 - used like a function that returns a reusable hasher
    """Request keys: everything fixed for a job hashed once, then each request's own part in vectorised steps.

    The prompt a request shows is `template(first description, second description)` and the template's digest is in
    the fixed part, so a request is identified by its two descriptions and its order. Each description gets two
    128-bit values from blake2b keyed with the fixed part (one as the first option, one as the second), and a
    request's key XORs its first option's, its second option's and its order's value: keyed pseudo-random 128-bit
    values whose XOR collides for two distinct requests with probability 2^-128, computed for a whole batch in a
    few array operations (hashing every rendered prompt, or even every request, would dominate a simulated job).
    """

    def __init__(self, *, model: str, revision: str | None, engine_settings: dict, template_digest: str,
                 system_message: str | None, k: int, seed: int, mode: str, temperature: float | None = None,
                 max_tokens: int | None = None) -> None:
        # temperature and max_tokens change sampled replies; a logprob request reads one next-token distribution,
        # which neither touches (callers pass None there)
        payload = json.dumps({"model": model, "revision": revision, "engine": engine_settings,
                              "template": template_digest, "system": system_message, "k": k, "seed": seed,
                              "mode": mode, "temperature": temperature, "max_tokens": max_tokens,
                              "key_format": 4}, sort_keys=True, default=str)
        self._secret = hashlib.blake2b(payload.encode(), digest_size=32).digest()
        self._order = np.stack([self._value(b"order", bytes([o])) for o in range(2)])

    def _value(self, role: bytes, data: bytes) -> np.ndarray:
        digest = hashlib.blake2b(data, key=self._secret, person=role, digest_size=16).digest()
        return np.frombuffer(digest, np.uint64)

    def outcome_values(self, descriptions: list[str]) -> np.ndarray:
        """(n, 2, 2) uint64: each description's 128-bit value as the first and as the second option."""
        out = np.empty((len(descriptions), 2, 2), np.uint64)
        for i, text in enumerate(descriptions):
            data = text.encode()
            out[i, 0], out[i, 1] = self._value(b"first", data), self._value(b"second", data)
        return out

    def keys(self, values: np.ndarray, first: np.ndarray, second: np.ndarray, order: np.ndarray) -> list[str]:
        """Hex keys of requests showing outcome `first[i]` then `second[i]` in `order[i]` (`values`: see above)."""
        key = values[first, 0] ^ values[second, 1] ^ self._order[np.asarray(order, np.int64)]
        hexed = np.ascontiguousarray(key).tobytes().hex().encode()
        return np.frombuffer(hexed, "S32").astype("U32").tolist()


class ResponseStore:
    """Append-only store of raw engine results for one model, cached in memory as columns."""

    def __init__(self, root: str | ResultsLayout, model: str) -> None:
        layout = root if isinstance(root, ResultsLayout) else ResultsLayout(str(root))
        self.fs = layout.filesystem[0]
        self.path = layout.responses_dir(model)
        self.fs.create_dir(self.path, recursive=True)
        self._index: dict[str, int] | None = None  # answers only
        self._columns = ResultColumns()
        self._failures: dict[str, list] = {}  # key -> [failed attempts, last error]
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def hold(self, wait_s: float | None = 0.0):
        """The store's job lock (`store_lock`), as a context manager: one job writes a store at a time."""
        return hold_store_lock(self.path, local=isinstance(self.fs, pafs.LocalFileSystem), wait_s=wait_s)

    def parts(self) -> list[str]:
        """Paths of the store's Parquet parts, in write order."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def _load(self) -> dict[str, int]:
        """Key -> row of the in-memory columns (first write wins; later duplicates, if any, are ignored).

        A part that cannot be read as one raises StoreDamaged naming it (`check` lists them all; `jobs.store repair`
        sets them aside)."""
        if self._index is None:
            self._index, self._columns, self._failures = {}, ResultColumns(), {}
            for part in self.parts():
                batch = self._read_part(part)
                if isinstance(batch, PartProblem):
                    self._index = None
                    raise StoreDamaged(f"the response part {part} cannot be used ({batch.reason}); run `python -m "
                                       f"jobs.store repair results_root=<root>` to set it aside (what it held is "
                                       f"asked again)", [batch])
                self._remember(batch)
        return self._index

    def _read_part(self, part: str) -> ResultBatch | PartProblem:
        try:
            with self.fs.open_input_file(part) as f:
                table = pq.read_table(f)
        except (OSError, pa.ArrowException, ValueError) as err:  # truncated, not Parquet, unreadable
            return PartProblem(part, f"not a readable Parquet file: {err}")
        missing = [name for name in _REQUIRED if name not in table.column_names]
        if missing:
            return PartProblem(part, f"not a response part: no columns {missing} (has {table.column_names[:8]})",
                               table.num_rows)
        version = (table.schema.metadata or {}).get(_VERSION_KEY)
        if version is not None and int(version) > SCHEMA_VERSION:
            return PartProblem(part, f"written by a newer uetool (store schema {int(version)}, this one reads "
                                     f"{SCHEMA_VERSION})", table.num_rows)
        try:
            return _batch_from_table(table)
        except (pa.ArrowException, ValueError, TypeError) as err:
            return PartProblem(part, f"columns of unexpected types: {err}", table.num_rows)

    def check(self) -> tuple[list[PartProblem], list[str]]:
        """(parts that cannot be used, temporary files left by writers) — reads every part."""
        problems = [p for p in map(self._read_part, self.parts()) if isinstance(p, PartProblem)]
        return problems, self.temporary_files()

    def temporary_files(self) -> list[str]:
        return temporary_files(self.fs, self.path)

    def remove_temporary_files(self) -> int:
        """Delete writers' leftover temporary parts; call it only while holding the store's lock (`hold`), when no
        writer of this store can be alive. Returns how many were removed."""
        return remove_temporary_files(self.fs, self.path)

    def _remember(self, batch: ResultBatch, checked: bool = False) -> ResultBatch:
        """Add answers whose keys are new to the cache (`checked`: the caller knows they are) and count failed
        attempts; returns the rows added as answers."""
        index = self._index
        assert index is not None
        if batch.errors.count(None) != len(batch):  # failures are counted, never cached as answers
            for key, error in zip(batch.keys, batch.errors, strict=True):
                if error is not None:
                    record = self._failures.setdefault(key, [0, None])
                    record[0] += 1
                    record[1] = error
            batch = batch.take([i for i, e in enumerate(batch.errors) if e is None])
        if not checked:
            fresh = _fresh(batch.keys, index)
            if len(fresh) < len(batch):
                batch = batch.take(fresh)
        index.update(zip(batch.keys, range(len(index), len(index) + len(batch)), strict=True))
        self._columns.extend(batch)
        return batch

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def attempts(self, keys: list[str]) -> np.ndarray:
        """Failed attempts stored for each key (0 for a key never failed; an answered key may have failed before)."""
        self._load()
        failures = self._failures
        if not failures:
            return np.zeros(len(keys), np.int64)
        return np.fromiter((failures[k][0] if k in failures else 0 for k in keys), np.int64, len(keys))

    def last_error(self, key: str) -> str | None:
        """The error of the key's latest failed attempt, if it ever failed."""
        self._load()
        record = self._failures.get(key)
        return None if record is None else record[1]

    def missing(self, keys: list[str]) -> list[int]:
        """Positions of `keys` that the store does not hold."""
        return np.flatnonzero(self.rows(keys) < 0).tolist()

    def rows(self, keys: list[str]) -> np.ndarray:
        """Row of each key in the in-memory columns, -1 where the store does not hold it."""
        return np.fromiter(map(self._load().get, keys, repeat(-1)), np.int64, len(keys))

    def get(self, keys: list[str], rows: np.ndarray | None = None) -> ResultBatch:
        """Stored results for `keys`, in that order (KeyError names a missing key); `rows`: from `rows(keys)`."""
        rows = self.rows(keys) if rows is None else np.asarray(rows, np.int64)
        if len(rows) and rows.min() < 0:
            key = keys[int(np.argmin(rows))]
            raise KeyError(f"response {key} is not in the store at {self.path}")
        return self._columns.take(rows, keys)

    def load(self) -> dict[str, ElicitationResult]:
        """Every stored result by key (a per-object view for inspection; the runtime uses `get`)."""
        keys = list(self._load())
        return dict(zip(keys, self.get(keys).to_results(), strict=True))

    def count_rows(self) -> int:
        """Rows on disk, duplicates included (tests use it to prove nothing was stored twice)."""
        total = 0
        for part in self.parts():
            with self.fs.open_input_file(part) as f:
                total += pq.read_metadata(f).num_rows
        return total

    def append(self, batch: ResultBatch, *, background: bool = False, new: bool = False) -> int:
        """Write the results not yet stored as one Parquet part (temp file + rename) and cache them; returns how many
        answers were added (failed results are written as records of the attempt and counted by `attempts`).

        With `background=True` the part is written by the store's writer thread while the caller goes on (receiving
        more shards, say): call `flush()` before anything uses them. `new=True`: the caller has checked (with
        `rows`, since the last append) that no key is stored and none repeats, so they are not checked again.
        """
        index = self._load()
        if new:
            rows = batch
        else:
            fresh = _fresh(batch.keys, index)
            if not fresh:
                return 0
            rows = batch if len(fresh) == len(batch) else batch.take(fresh)
        table = pa.table({
            "key": _key_array(rows.keys), "a": np.asarray(rows.a, np.int64), "b": np.asarray(rows.b, np.int64),
            "order": np.asarray(rows.order, np.int8), "texts": rows.texts.to_arrow(),
            "p_first": _nullable(rows.p_first), "p_second": _nullable(rows.p_second),
            "other_mass": _nullable(rows.other_mass), "error": _errors(rows.errors),
            "written_at": np.full(len(rows), time.time()),
            **{name: _nullable_int(rows.tokens[:, j]) for j, name in enumerate(TOKEN_COLUMNS)},
        }, schema=_SCHEMA).replace_schema_metadata({_VERSION_KEY: str(SCHEMA_VERSION).encode()})
        if background:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="uetool-store-writer")  # parts stay ordered
            self._pending.append(self._writer.submit(self._write, table))
        else:
            try:
                self._write(table)
            except Exception as err:  # nothing was cached: the rows stay missing and are asked again
                raise StoreWriteError(f"a response part could not be written to {self.path}: {err}") from err
        return len(self._remember(rows, checked=True))

    def flush(self, *, raise_errors: bool = True) -> None:
        """Wait until every background write is durable.

        A failed write drops the in-memory cache (it held rows that never reached disk; the next call re-reads
        what did) and raises StoreWriteError naming the store.
        """
        pending, self._pending = self._pending, []
        errors = []
        for future in pending:
            try:
                future.result()
            except Exception as err:  # noqa: BLE001 - collected, then raised once with the store's path
                errors.append(err)
        if errors:
            self._index, self._columns = None, ResultColumns()
            if raise_errors:
                raise StoreWriteError(f"{len(errors)} response part(s) could not be written to {self.path}: "
                                      f"{errors[0]}") from errors[0]

    def _write(self, table: pa.Table) -> None:
        name = f"{self.path}/part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        sink = pa.BufferOutputStream()
        # statistics only where a reader filters (not on random keys or replies); a dictionary only for replies;
        # random hex keys are left uncompressed (snappy saves ~10% of them and costs ~20% of the encoding time)
        pq.write_table(table, sink, write_statistics=["a", "b", "order"], use_dictionary=["texts.list.element"],
                       compression=_COMPRESSION)
        # temporary name + rename (the reader lists only *.parquet); a failed write leaves no temporary file behind
        write_atomic(self.fs, name, sink.getvalue())


class StoreWriteError(OSError):
    """A response part could not be written: nothing from it was used."""


@dataclass
class PartProblem:
    """A file among a store's parts that cannot be used, why, and how many rows it says it holds (None: unknown)."""

    path: str
    reason: str
    rows: int | None = None


class StoreDamaged(OSError):
    """The store holds a part that cannot be used; `problems` names each."""

    def __init__(self, message: str, problems: list[PartProblem]) -> None:
        super().__init__(message)
        self.problems = problems


def _fresh(keys: list[str], index: dict[str, int]) -> list[int]:
    """Positions of keys not in `index`; a key repeated within `keys` counts once (its first position)."""
    if index.keys().isdisjoint(keys) and len(set(keys)) == len(keys):  # the usual case, checked in C
        return list(range(len(keys)))
    seen: set[str] = set()
    return [i for i, key in enumerate(keys) if not (key in index or key in seen or seen.add(key))]


def _nullable(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, float)
    missing = np.isnan(values)
    if missing.all():  # sample mode: no probabilities
        return pa.nulls(len(values), pa.float64())
    return pa.array(values, mask=missing, type=pa.float64())


def _nullable_int(values: np.ndarray) -> pa.Array:
    missing = np.isnan(values)
    if missing.all():
        return pa.nulls(len(values), pa.int64())
    return pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing, type=pa.int64())


def _errors(errors: list[str | None]) -> pa.Array:
    if errors.count(None) == len(errors):
        return pa.nulls(len(errors), pa.string())
    return pa.array(errors, pa.string())


def _key_array(keys: list[str]) -> pa.Array:
    """Keys as a string column; the runtime's keys are all 32 ASCII hex digits, laid out straight into one buffer."""
    data = "".join(keys).encode()
    if not (data.isascii() and all(map((32).__eq__, map(len, keys)))):
        return pa.array(keys, pa.string())  # other keys (tests, older stores): the general conversion
    offsets = np.arange(0, len(data) + 1, 32, dtype=np.int32)
    return pa.StringArray.from_buffers(len(keys), pa.py_buffer(offsets), pa.py_buffer(data))


def _batch_from_table(table: pa.Table) -> ResultBatch:
    def floats(name: str) -> np.ndarray:
        if name not in table.column_names:  # a part from before the column existed
            return np.full(table.num_rows, np.nan)
        return table.column(name).to_numpy(zero_copy_only=False).astype(float)  # nulls become NaN

    return ResultBatch(table.column("key").to_pylist(), table.column("a").to_numpy(), table.column("b").to_numpy(),
                       table.column("order").to_numpy().astype(np.int8), Replies.from_arrow(table.column("texts")),
                       floats("p_first"), floats("p_second"), floats("other_mass"), table.column("error").to_pylist(),
                       np.stack([floats(name) for name in TOKEN_COLUMNS], axis=1).reshape(-1, len(TOKEN_COLUMNS)))
