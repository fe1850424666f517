"""A store that checks itself: every unusable file is named, `repair` moves it aside (never deletes it) and says
how many answers must be asked again; parts of older uetool versions stay readable."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.store import main as store_cli
from uetool.core.active import ActiveLearningState
from uetool.core.graph import PreferenceGraph
from uetool.engines.base import ResultBatch
from uetool.engines.replies import Replies
from uetool.io.checkpoint import CheckpointDamaged, read_checkpoint, write_checkpoint
from uetool.io.files import resolve_filesystem
from uetool.io.store import SCHEMA_VERSION, ResponseStore, StoreDamaged
from uetool.io.store_repair import repair, scan


def _batch(start: int, n: int) -> ResultBatch:
    keys = [f"{i:032x}" for i in range(start, start + n)]
    idx = np.arange(n)
    return ResultBatch(keys, idx, idx + 1, (idx % 2).astype(np.int8), Replies.from_lists([["A", "B"]] * n),
                       np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), [None] * n)


def _store(root) -> ResponseStore:
    store = ResponseStore(str(root), "m")
    for start in (0, 10, 20):
        store.append(_batch(start, 10))
    return store


def _truncate(path: str) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


DAMAGES = {
    "truncated part": lambda store: _truncate(store.parts()[1]),
    "random bytes": lambda store: open(f"{store.path}/part-9-deadbeef.parquet", "wb").write(
        np.random.default_rng(0).bytes(5000)),
    "foreign columns": lambda store: pq.write_table(pa.table({"x": [1, 2, 3]}),
                                                    f"{store.path}/part-9-foreign.parquet"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_part_is_named_then_moved_aside(tmp_path, damage):
    DAMAGES[damage](_store(tmp_path))
    with pytest.raises(StoreDamaged, match=r"the response part .*part-.*\.parquet cannot be used.*jobs.store repair"):
        len(ResponseStore(str(tmp_path), "m"))
    report = scan(str(tmp_path))
    assert len(report.damaged) == 1 and report.damaged[0].path.endswith(".parquet")
    assert store_cli(["check", f"results_root={tmp_path}"]) == 1
    fixed = repair(str(tmp_path))
    (moved_from, moved_to), = fixed.moved
    assert "/quarantine/" in moved_to and resolve_filesystem(moved_to)[0].get_file_info(moved_to).size > 0
    store = ResponseStore(str(tmp_path), "m")
    assert len(store) == (20 if damage == "truncated part" else 30)  # only the damaged part's answers are gone
    assert fixed.answers_lost == {"truncated part": None, "random bytes": None, "foreign columns": 3}[damage]
    assert store_cli(["check", f"results_root={tmp_path}"]) == 0


def test_a_damaged_checkpoint_is_named_then_moved_aside(tmp_path):
    fs, base = resolve_filesystem(tmp_path)
    path = f"{base}/compute_utilities/m/checkpoint.npz"
    fs.create_dir(path.rsplit("/", 1)[0])
    state = ActiveLearningState(5, 0, np.zeros(0, np.int64), PreferenceGraph(5))
    write_checkpoint(fs, path, "abc", state)
    assert read_checkpoint(fs, path, "abc").n_outcomes == 5 and read_checkpoint(fs, path, "other") is None
    _truncate(path)
    with pytest.raises(CheckpointDamaged, match=rf"the checkpoint {path} is damaged.*jobs.store repair"):
        read_checkpoint(fs, path, "abc")
    fixed = repair(str(tmp_path))
    assert [a for a, _ in fixed.moved] == [path] and read_checkpoint(fs, path, "abc") is None


def test_older_parts_stay_readable_and_newer_ones_are_named(tmp_path):
    store = _store(tmp_path)
    old = pa.table({"key": ["k-old"], "a": [0], "b": [1], "order": pa.array([0], pa.int8()),
                    "texts": pa.array([["A"]], pa.list_(pa.string())), "error": pa.array([None], pa.string())})
    pq.write_table(old, f"{store.path}/part-1-old.parquet")  # no schema version, no p_first/other_mass/written_at
    reread = ResponseStore(str(tmp_path), "m")
    assert reread.get(["k-old"]).texts.tolist() == [["A"]] and np.isnan(reread.get(["k-old"]).p_first[0])
    newer = pq.read_table(store.parts()[-1])
    newer = newer.replace_schema_metadata({b"uetool.store_schema": str(SCHEMA_VERSION + 1).encode()})
    pq.write_table(newer, f"{store.path}/part-99-newer.parquet")
    with pytest.raises(StoreDamaged, match="written by a newer uetool"):
        len(ResponseStore(str(tmp_path), "m"))


def test_parts_carry_the_schema_version_and_leftover_temporary_files_are_removed(tmp_path):
    store = _store(tmp_path)
    assert pq.read_schema(store.parts()[0]).metadata[b"uetool.store_schema"] == str(SCHEMA_VERSION).encode()
    open(f"{store.path}/.part-1-abc.parquet.tmp", "wb").write(b"half")
    assert scan(str(tmp_path)).temporary and store_cli(["check", f"results_root={tmp_path}"]) == 1
    assert repair(str(tmp_path)).removed_temporary == 1
    assert store_cli(["check", f"results_root={tmp_path}"]) == 0
    assert store_cli(["fix"]) == 2 and store_cli(["check", "root=x"]) == 2


class _FullDisk:
    """A local filesystem whose writes fail with ENOSPC after the file is created (duck-types the calls used)."""

    def __init__(self) -> None:
        import pyarrow.fs as pafs

        self.local = pafs.LocalFileSystem()

    def open_output_stream(self, path: str):
        import errno

        self.local.open_output_stream(path).close()  # the temporary file exists, as on a real full disk

        class Stream:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

        return Stream()

    def __getattr__(self, name):
        return getattr(self.local, name)


def test_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path):
    state = ActiveLearningState(5, 0, np.zeros(0, np.int64), PreferenceGraph(5))
    path = f"{tmp_path}/checkpoint.npz"
    with pytest.raises(OSError, match=rf"could not write the checkpoint {path}: No space left"):
        write_checkpoint(_FullDisk(), path, "abc", state)
    assert list(tmp_path.iterdir()) == []  # the temporary file went with the failed write
