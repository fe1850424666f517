"""Damaged files under a results root, through the real job: named before Ray starts, and after `jobs.store
repair` the next run asks again exactly what was lost and ends identical to a clean run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, compose

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _overrides(root) -> list[str]:
    return ["model=tiny-random", "engine=simulated", "outcomes=quickstart", f"results_root={root}",
            "fit.bootstrap=0", "progress=false", "pool.shard_size=50"]


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    from uetool.runtime.compute import compute_utilities

    root = tmp_path_factory.mktemp("clean")
    compute_utilities(compose(_overrides(root)))
    return root


def _truncate(path) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])


def _damage(root, kind: str) -> tuple[str, int]:
    """Damage one file; returns its path and how many answers it held (0 for a checkpoint)."""
    from uetool.io.store import ResponseStore

    store = ResponseStore(str(root), "tiny-random.simulated")
    if kind == "truncated checkpoint":
        path = root / "compute_utilities" / "tiny-random.simulated" / "checkpoint.npz"
        _truncate(path)
        return str(path), 0
    if kind == "random bytes":  # a stray file under a part's name: it held no answers of this store
        path = f"{store.path}/part-0-stray.parquet"
        with open(path, "wb") as f:
            f.write(os.urandom(4096))
        return path, 0
    parts = store.parts()
    # the last part written: transitivity's triads, asked after the final checkpoint, so every answer it alone
    # holds is needed again (an earlier part may hold active-learning answers the checkpoint already carries, and
    # which parts those are depends on how the background writer batched the shards)
    part = parts[-1]
    rows = pq.read_metadata(part).num_rows
    # the answers the part alone holds: a key asked again in a later shard (the same pair drawn twice) is still
    # stored elsewhere and is not lost with it
    elsewhere = {k for p in parts if p != part for k in pq.read_table(p, columns=["key"])["key"].to_pylist()}
    lost = len(set(pq.read_table(part, columns=["key"])["key"].to_pylist()) - elsewhere)
    if kind == "truncated part":
        _truncate(part)
    elif kind == "foreign columns":
        pq.write_table(pa.table({"x": list(range(rows))}), part)
    return part, lost


@pytest.mark.parametrize("kind", ["truncated part", "random bytes", "foreign columns", "truncated checkpoint"])
def test_damage_is_named_and_repair_resumes_to_the_clean_result(ray_cluster, clean_root, tmp_path, kind):
    from uetool.io.checkpoint import CheckpointDamaged
    from uetool.io.store import StoreDamaged
    from uetool.io.store_repair import repair
    from uetool.runtime.compute import compute_utilities

    root = tmp_path / "damaged"
    shutil.copytree(clean_root, root)
    path, lost = _damage(root, kind)
    with pytest.raises((StoreDamaged, CheckpointDamaged), match=path):
        compute_utilities(compose(_overrides(root)))
    report = repair(str(root))
    assert [a for a, _ in report.moved] == [path]
    resumed = compute_utilities(compose(_overrides(root)))
    assert resumed["stats"].asked == lost  # exactly what the damaged part held (a checkpoint or stray file: none)
    for name in ("utilities", "edges"):
        run_dir = ("compute_utilities", "tiny-random.simulated", f"{name}.parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(root.joinpath(*run_dir)),
                                      pd.read_parquet(clean_root.joinpath(*run_dir)))


def test_the_job_names_a_damaged_part_before_ray_starts(clean_root, tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(clean_root, root)
    path, _ = _damage(root, "truncated part")
    done = subprocess.run([sys.executable, "-m", "jobs.compute_utilities", *_overrides(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""})
    assert done.returncode != 0 and path in done.stderr and "jobs.store repair" in done.stderr
    assert "Started a local Ray instance" not in done.stderr
