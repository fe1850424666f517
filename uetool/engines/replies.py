"""The sampled replies of many requests as one dictionary-coded column.

Request i's replies are `vocab[c]` for the codes `codes[offsets[i]:offsets[i + 1]]`; code -1 stands for a missing
reply (a failed request). Replies repeat a lot ("A", "B", a handful of phrasings), so a batch holds each distinct
string once and per-sample work (shipping through Ray, writing Parquet, parsing) becomes array work plus one step
per distinct reply, instead of a Python object per sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas and pyarrow load where replies are stored or factorised, not with every engine
    import pyarrow as pa

__all__ = ["Replies"]


@dataclass(eq=False)
class Replies:
    vocab: list[str]
    codes: np.ndarray  # int32, one per sample, -1 = no reply
    offsets: np.ndarray  # int64, len(requests) + 1

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[str | None]]) -> Replies:
        lengths = np.fromiter(map(len, rows), np.int64, len(rows))
        flat = np.empty(int(lengths.sum()), object)
        flat[:] = [t for row in rows for t in row]
        import pandas as pd

        ids, uniques = pd.factorize(flat, use_na_sentinel=True)  # None -> -1
        return cls(list(uniques), ids.astype(np.int32), _offsets(lengths))

    @classmethod
    def uniform(cls, vocab: Sequence[str], codes: np.ndarray) -> Replies:
        """`codes` (n, k): k replies for every request."""
        codes = np.asarray(codes)
        n, k = codes.shape
        return cls(list(vocab), codes.astype(np.int32).ravel(), np.arange(n + 1, dtype=np.int64) * k)

    @classmethod
    def empty(cls, n: int) -> Replies:
        """No replies for any of n requests (logprob mode)."""
        return cls([], np.zeros(0, np.int32), np.zeros(n + 1, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[Replies]) -> Replies:
        if not parts:
            return cls.empty(0)
        if len(parts) == 1:
            return parts[0]
        position: dict[str, int] = {}
        codes, lengths = [], []
        for part in parts:
            mapping = np.array([position.setdefault(t, len(position)) for t in part.vocab] + [-1], np.int32)
            codes.append(mapping[part.codes])  # -1 takes the last entry and stays -1
            lengths.append(part.lengths())
        return cls(list(position), np.concatenate(codes), _offsets(np.concatenate(lengths)))

    # ---- access --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> list[str | None]:
        vocab = self.vocab
        return [vocab[c] if c >= 0 else None for c in self.codes[self.offsets[i]:self.offsets[i + 1]].tolist()]

    def __iter__(self) -> Iterator[list[str | None]]:
        return (self[i] for i in range(len(self)))

    def tolist(self) -> list[list[str | None]]:
        return list(self)

    def take(self, rows: np.ndarray | Sequence[int]) -> Replies:
        rows = np.asarray(rows, np.int64)
        lengths = self.lengths()[rows]
        offsets = _offsets(lengths)
        # sample j of new row r sits at old position offsets_old[rows[r]] + j
        shift = np.repeat(self.offsets[:-1][rows] - offsets[:-1], lengths)
        return Replies(self.vocab, self.codes[np.arange(offsets[-1]) + shift], offsets)

    def matrix(self, k: int) -> np.ndarray:
        """(n, k) codes: each request's first k replies, padded with -1 where it has fewer."""
        n, lengths = len(self), self.lengths()
        if (lengths == k).all():
            return self.codes.reshape(n, k)
        out = np.full((n, k), -1, np.int32)
        row = np.repeat(np.arange(n), lengths)
        col = np.arange(len(self.codes)) - np.repeat(self.offsets[:-1], lengths)
        keep = col < k
        out[row[keep], col[keep]] = self.codes[keep]
        return out

    def compact(self) -> Replies:
        """The same replies with codes in the smallest integer type that holds them (cheaper to ship)."""
        dtype = np.int8 if len(self.vocab) < 2**7 else np.int16 if len(self.vocab) < 2**15 else np.int32
        return Replies(self.vocab, self.codes.astype(dtype, copy=False), self.offsets)

    # ---- Arrow / Parquet -----------------------------------------------------------------------------------
    def to_arrow(self) -> pa.ListArray:
        """list<dictionary<int32, string>>: Parquet stores each distinct reply once per column chunk."""
        import pyarrow as pa

        codes = self.codes.astype(np.int32, copy=False)
        missing = codes < 0
        indices = pa.array(codes, mask=missing) if missing.any() else pa.array(codes)
        values = pa.DictionaryArray.from_arrays(indices, pa.array(self.vocab, pa.string()))
        return pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), values)

    @classmethod
    def from_arrow(cls, column: pa.Array | pa.ChunkedArray) -> Replies:
        """From a list<string> or list<dictionary<string>> column (a null list reads as no replies)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        parts = []
        for chunk in chunks:
            chunk = chunk.fill_null(pa.scalar([], chunk.type)) if chunk.null_count else chunk
            offsets = chunk.offsets.to_numpy().astype(np.int64)
            values = chunk.values.slice(offsets[0], offsets[-1] - offsets[0])  # a sliced chunk keeps its parent
            if not pa.types.is_dictionary(values.type):
                values = pc.dictionary_encode(values)
            codes = values.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
            parts.append(cls(values.dictionary.to_pylist(), codes, offsets - offsets[0]))
        return cls.concat(parts) if parts else cls.empty(0)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets
