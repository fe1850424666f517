"""Response store internals without Ray: dictionary-coded replies, request keys, growable columns, Parquet parts."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uetool.engines.base import ElicitationResult, ResultBatch
from uetool.engines.replies import Replies
from uetool.io.result_columns import ResultColumns
from uetool.io.store import ResponseStore, StoreWriteError, key_prefix
from uetool.runtime.elicit import ShardWriter

ROWS = [["A", "B", "A"], [], [None, "Both have merits."], ["B"], ["I'm sorry", None, "A", "A"]]


def test_replies_round_trip_lists_take_concat_and_matrix():
    replies = Replies.from_lists(ROWS)
    assert replies.tolist() == ROWS and len(replies) == 5
    assert sorted(replies.vocab) == sorted({t for row in ROWS for t in row if t is not None})  # each once
    assert replies.take([4, 0, 0, 1]).tolist() == [ROWS[4], ROWS[0], ROWS[0], ROWS[1]]
    assert replies.take([]).tolist() == []
    other = Replies.from_lists([["B", "new"], ["A"]])
    assert Replies.concat([replies, other, Replies.empty(2)]).tolist() == ROWS + [["B", "new"], ["A"], [], []]
    m = replies.matrix(3)  # first 3 replies, -1 padding; None is -1 too
    decoded = [[replies.vocab[c] if c >= 0 else None for c in row] for row in m.tolist()]
    assert decoded == [["A", "B", "A"], [None] * 3, [None, "Both have merits.", None], ["B", None, None],
                       ["I'm sorry", None, "A"]]


def test_replies_arrow_round_trip_and_plain_string_parts(tmp_path):
    replies = Replies.from_lists(ROWS)
    pq.write_table(pa.table({"texts": replies.to_arrow()}), tmp_path / "dict.parquet")
    assert Replies.from_arrow(pq.read_table(tmp_path / "dict.parquet").column("texts")).tolist() == ROWS
    # parts written with plain list<string> texts (and a null list) read the same way
    plain = pa.array([["A", None], None, ["B"]], pa.list_(pa.string()))
    pq.write_table(pa.table({"texts": plain}), tmp_path / "plain.parquet")
    assert Replies.from_arrow(pq.read_table(tmp_path / "plain.parquet").column("texts")).tolist() == [
        ["A", None], [], ["B"]]
    # a sliced list array keeps its parent's values: only the slice is read
    assert Replies.from_arrow(replies.to_arrow().slice(3, 2)).tolist() == ROWS[3:]


def _keys(**change):
    settings = dict(model="m", revision="r1", engine_settings={"engine": "hf"}, template_digest="t",
                    system_message=None, k=10, seed=0, mode="sample") | change
    hasher = key_prefix(**settings)
    values = hasher.outcome_values(["apples", "bananas", "cherries"])
    first, second = np.array([0, 1, 0, 2, 1]), np.array([1, 0, 2, 0, 2])
    return hasher.keys(values, first, second, np.array([0, 1, 0, 0, 1]))


def test_request_keys_are_unique_stable_and_change_with_every_setting():
    keys = _keys()
    assert len(set(keys)) == len(keys) and all(len(k) == 32 for k in keys)
    assert _keys() == keys  # stable across processes: nothing random, nothing from memory addresses
    for change in [{"model": "m2"}, {"revision": "r2"}, {"engine_settings": {"engine": "vllm"}},
                   {"template_digest": "u"}, {"system_message": "hi"}, {"k": 5}, {"seed": 1}, {"mode": "logprob"}]:
        assert not set(_keys(**change)) & set(keys), change
    # shown order matters: (a then b) and (b then a) are different prompts; order tags the answer's meaning
    hasher = key_prefix(model="m", revision=None, engine_settings={}, template_digest="t", system_message=None, k=1,
                        seed=0, mode="sample")
    values = hasher.outcome_values(["x", "y"])
    one = np.array([0]), np.array([1])
    assert hasher.keys(values, *one, np.array([0])) != hasher.keys(values, one[1], one[0], np.array([0]))
    assert hasher.keys(values, *one, np.array([0])) != hasher.keys(values, *one, np.array([1]))


def _batch(keys: list[str], rows: list[list[str | None]], errors: list | None = None) -> ResultBatch:
    n = len(keys)
    idx = np.arange(n)
    return ResultBatch(keys, idx, idx + 1, (idx % 2).astype(np.int8), Replies.from_lists(rows), np.full(n, np.nan),
                       np.full(n, np.nan), np.full(n, np.nan), errors or [None] * n)


def test_result_columns_grow_and_take_rows():
    columns = ResultColumns()
    batches = [_batch([f"k{j}-{i}" for i in range(700)], [[f"r{(i * j) % 7}"] * (i % 3) for i in range(700)],
                      [None if i % 50 else f"err {j}/{i}" for i in range(700)]) for j in range(4)]
    for batch in batches:
        columns.extend(batch)
    everything = ResultBatch.concat(batches)
    rows = np.random.default_rng(0).integers(0, len(everything), 500)
    got = columns.take(rows, [everything.keys[r] for r in rows])
    want = everything.take(rows)
    assert got.keys == want.keys and got.texts.tolist() == want.texts.tolist() and got.errors == want.errors
    np.testing.assert_array_equal(got.a, want.a)
    np.testing.assert_array_equal(got.order, want.order)


def test_store_writes_once_reads_back_and_names_missing_keys(tmp_path):
    store = ResponseStore(str(tmp_path), "org-model")
    first = _batch(["a", "b", "c"], [["A"], ["B", None], []], [None, None, "HTTP 500"])
    assert store.append(first) == 2  # c failed: stored as a record of the attempt, not as an answer
    assert store.missing(["a", "c"]) == [1] and store.attempts(["a", "c"]).tolist() == [0, 1]
    assert store.append(_batch(["c", "d", "d"], [["x"], ["B"], ["A"]])) == 2  # c answered now; d twice in the batch
    assert store.count_rows() == 5 and len(store) == 4  # every attempt on disk, one answer per key
    reread = ResponseStore(str(tmp_path), "org-model")  # a new process sees the same responses
    got = reread.get(["d", "a", "c", "b"])
    assert got.texts.tolist() == [["B"], ["A"], ["x"], ["B", None]]
    assert got.errors == [None, None, None, None]
    assert reread.attempts(["c", "a"]).tolist() == [1, 0] and reread.last_error("c") == "HTTP 500"
    assert reread.missing(["a", "zz", "d", "yy"]) == [1, 3]
    with pytest.raises(KeyError, match="zz"):
        reread.get(["a", "zz"])
    assert reread.load()["c"] == ElicitationResult("c", texts=["x"])


def test_failed_attempts_are_never_served_as_answers(tmp_path):
    store = ResponseStore(str(tmp_path), "m")
    for attempt in range(3):
        store.append(_batch(["k"], [[None, None]], [f"503 Service Unavailable (attempt {attempt})"]))
    reread = ResponseStore(str(tmp_path), "m")
    assert reread.missing(["k"]) == [0] and len(reread) == 0
    assert reread.attempts(["k", "other"]).tolist() == [3, 0]
    assert reread.last_error("k") == "503 Service Unavailable (attempt 2)"


def test_background_writes_are_durable_after_flush_and_a_failed_write_is_never_kept(tmp_path):
    store = ResponseStore(str(tmp_path), "m")
    for j in range(3):
        store.append(_batch([f"{j}-{i}" for i in range(10)], [["A"]] * 10), background=True)
    store.flush()
    assert ResponseStore(str(tmp_path), "m").count_rows() == 30  # on disk, seen by another reader

    shutil.rmtree(store.path)
    open(store.path, "w").close()  # the directory is now a file: the next write fails
    store.append(_batch(["lost"], [["B"]]), background=True)
    with pytest.raises(StoreWriteError, match="could not be written to .*m"):
        store.flush()
    os.remove(store.path)
    os.makedirs(store.path)
    assert "lost" not in store and len(store) == 0  # the cache was dropped and re-read from what is on disk

    shutil.rmtree(store.path)
    open(store.path, "w").close()
    with pytest.raises(StoreWriteError, match="could not be written to .*m"):
        store.append(_batch(["lost too"], [["A"]]))  # written on this thread: the same error, at once
    os.remove(store.path)
    os.makedirs(store.path)
    assert "lost too" not in store and len(store) == 0


def test_shard_writer_stores_every_shard_and_the_last_on_the_calling_thread(tmp_path):
    """The pool's on_shard hook: shards written in the background while more are due, the last one inline (it
    is on disk when the hook returns); keys the caller checked are not checked again."""
    store = ResponseStore(str(tmp_path), "m")
    store.rows(["none"])  # the elicitor looks keys up before it asks
    writer = ShardWriter(store, expected=30, distinct=True)
    shards = [_batch([f"{j}-{i}" for i in range(10)], [["A"]] * 10) for j in range(3)]
    for shard in shards[:2]:
        writer(shard)
    assert len(store._pending) == 2  # in the writer thread's hands
    writer(shards[2])
    assert len(store._pending) == 2  # the last was not handed over ...
    on_disk = {k for part in store.parts() for k in pq.read_table(part, columns=["key"]).column("key").to_pylist()}
    assert set(shards[2].keys) <= on_disk  # ... it is already durable
    store.flush()
    assert ResponseStore(str(tmp_path), "m").count_rows() == len(store) == 30


@pytest.mark.parametrize("hex_keys", [True, False])
def test_parts_read_back_every_column_as_written(tmp_path, hex_keys):
    """The write path's shortcuts (keys laid straight into a buffer, all-null columns) change nothing on disk."""
    keys = [f"{i:032x}" if hex_keys else f"key-{i}" for i in range(6)]
    batch = _batch(keys, [["A", "B"], [], ["B"], [None, "A"], ["A"], ["B", "B"]],
                   [None, "HTTP 500 after 4 tries", None, None, None, None])
    batch.p_first[:] = [0.25, np.nan, 0.5, np.nan, 1.0, 0.0]
    all_null = _batch([k + "x" if not hex_keys else f"{i + 100:032x}" for i, k in enumerate(keys)], [["A"]] * 6)
    store = ResponseStore(str(tmp_path), "m")
    store.append(batch)
    store.append(all_null)
    table = pd.read_parquet(store.path)
    got = table.set_index("key").loc[keys]
    assert [None if pd.isna(e) else e for e in got["error"]] == batch.errors
    np.testing.assert_array_equal(got["p_first"].to_numpy(), batch.p_first)
    assert [list(t) for t in got["texts"]] == [["A", "B"], [], ["B"], [None, "A"], ["A"], ["B", "B"]]
    assert table.set_index("key").loc[all_null.keys, "p_first"].isna().all()
    answered = [k for k, e in zip(keys, batch.errors, strict=True) if e is None]  # the failure is no answer
    reread = ResponseStore(str(tmp_path), "m")
    again = reread.get(answered)
    assert again.texts.tolist() == [t for t, e in zip(batch.texts.tolist(), batch.errors, strict=True) if e is None]
    assert reread.last_error(keys[1]) == "HTTP 500 after 4 tries"


def test_token_counts_round_trip_and_older_parts_read_as_not_counted(tmp_path):
    batch = _batch(["a", "b", "c"], [["A"], ["B"], ["A"]])
    batch.tokens[:2] = [[50, 43, 3], [51, 43, 2]]  # "c": its engine did not count
    store = ResponseStore(str(tmp_path), "m")
    store.append(batch)
    on_disk = pd.read_parquet(store.path).set_index("key")
    assert on_disk.loc["a", ["prompt_tokens", "cached_tokens", "generated_tokens"]].tolist() == [50, 43, 3]
    assert str(on_disk["prompt_tokens"].dtype) in ("int64", "Int64", "float64")
    reread = ResponseStore(str(tmp_path), "m").get(["c", "b", "a"])
    np.testing.assert_array_equal(reread.tokens[1:], [[51, 43, 2], [50, 43, 3]])
    assert np.isnan(reread.tokens[0]).all()
    columns = ResultColumns()
    columns.extend(batch)
    np.testing.assert_array_equal(columns.take([1], ["b"]).tokens, [[51, 43, 2]])
    old = tmp_path / "old"  # a part written before token counts existed
    part = pq.read_table(next(p for p in (tmp_path / "responses" / "m").glob("*.parquet")))
    (old / "responses" / "m").mkdir(parents=True)
    pq.write_table(part.drop_columns(["prompt_tokens", "cached_tokens", "generated_tokens"]),
                   old / "responses" / "m" / "part-1-old.parquet")
    assert np.isnan(ResponseStore(str(old), "m").get(["a"]).tokens).all()
