"""Every result a store holds, in growable columns.

The store appends a shard per engine call and reads back a round's worth of rows per active-learning round.
Concatenating everything held on each read costs O(all rows) per round; growing each column in place (capacity
doubling) costs O(rows added) per append and O(rows read) per read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..engines.base import TOKEN_COLUMNS, ResultBatch
from ..engines.replies import Replies

__all__ = ["ResultColumns"]

_NUMERIC = (("a", np.int64), ("b", np.int64), ("order", np.int8), ("p_first", np.float64),
            ("p_second", np.float64), ("other_mass", np.float64))


class ResultColumns:
    def __init__(self) -> None:
        self._rows = 0
        self._numeric = {name: np.empty(0, dtype) for name, dtype in _NUMERIC}
        self._tokens = np.empty((0, len(TOKEN_COLUMNS)))
        self._errors: dict[int, str] = {}  # row -> error; nearly every request has none
        self._vocab: list[str] = []  # every distinct reply, each once
        self._position: dict[str, int] = {}
        self._codes, self._n_codes = np.empty(0, np.int32), 0
        self._offsets = np.zeros(1, np.int64)

    def __len__(self) -> int:
        return self._rows

    def extend(self, batch: ResultBatch) -> None:
        start, n = self._rows, len(batch)
        for name, _ in _NUMERIC:
            column = self._numeric[name] = _room(self._numeric[name], start + n)
            column[start:start + n] = getattr(batch, name)
        self._tokens = _room(self._tokens, start + n)
        self._tokens[start:start + n] = batch.tokens
        if batch.errors.count(None) != n:
            self._errors.update((start + i, e) for i, e in enumerate(batch.errors) if e is not None)
        replies = batch.texts
        mapping = np.array([self._code(t) for t in replies.vocab] + [-1], np.int32)
        m = len(replies.codes)
        self._codes = _room(self._codes, self._n_codes + m)
        self._codes[self._n_codes:self._n_codes + m] = mapping[replies.codes]  # -1 (no reply) stays -1
        self._offsets = _room(self._offsets, start + n + 1)
        self._offsets[start + 1:start + n + 1] = self._n_codes + replies.offsets[1:] - replies.offsets[0]
        self._n_codes += m
        self._rows += n

    def _code(self, text: str) -> int:
        code = self._position.get(text)
        if code is None:
            code = self._position[text] = len(self._vocab)
            self._vocab.append(text)
        return code

    def take(self, rows: Sequence[int] | np.ndarray, keys: list[str]) -> ResultBatch:
        """Rows `rows` (whose keys are `keys`) as one batch."""
        idx = np.asarray(rows, np.int64)
        n = self._rows
        replies = Replies(list(self._vocab), self._codes[:self._n_codes], self._offsets[:n + 1]).take(idx)
        errors = [self._errors.get(r) for r in idx.tolist()] if self._errors else [None] * len(idx)
        col = self._numeric
        return ResultBatch(list(keys), col["a"][:n][idx], col["b"][:n][idx], col["order"][:n][idx], replies,
                           col["p_first"][:n][idx], col["p_second"][:n][idx], col["other_mass"][:n][idx], errors,
                           self._tokens[:n][idx])


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """`array` itself if it can hold `size` entries, else a copy with at least double the capacity."""
    if len(array) >= size:
        return array
    grown = np.empty((max(size, 2 * len(array), 1024), *array.shape[1:]), array.dtype)
    grown[:len(array)] = array
    return grown
