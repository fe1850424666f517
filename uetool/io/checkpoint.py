"""A run's resume state (`ActiveLearningState` and the fingerprint of the config that wrote it) on any filesystem.

A damaged checkpoint (truncated, not a checkpoint at all) is named in a `CheckpointDamaged` error with the way out
(`python -m jobs.store repair`), never read as an empty or foreign state.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from ..core.active import ActiveLearningState
from .files import file_exists, read_bytes, write_atomic

__all__ = ["CheckpointDamaged", "read_checkpoint", "write_checkpoint", "check_checkpoint"]


class CheckpointDamaged(OSError):
    """A checkpoint file exists but cannot be read as one."""


def check_checkpoint(data: bytes) -> tuple[str, ActiveLearningState]:
    """(fingerprint, state) of a checkpoint's bytes; ValueError saying what is wrong with them."""
    try:
        z = np.load(io.BytesIO(data))
        return str(z["fingerprint"]), ActiveLearningState.from_bytes(z["state"].tobytes())
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, TypeError) as err:
        raise ValueError(f"{type(err).__name__}: {err}") from None


def read_checkpoint(fs, path: str, fingerprint: str) -> ActiveLearningState | None:
    """The state at `path` if a run of this config wrote it; None when there is none or another config wrote it."""
    if not file_exists(fs, path):
        return None
    try:
        found, state = check_checkpoint(read_bytes(fs, path))
    except ValueError as err:
        raise CheckpointDamaged(f"the checkpoint {path} is damaged ({err}); run `python -m jobs.store repair "
                                f"results_root=<root>` to set it aside (the run then starts over, reusing every "
                                f"stored answer)") from None
    return state if found == fingerprint else None  # another config: start afresh (the store still serves answers)


def write_checkpoint(fs, path: str, fingerprint: str, state: ActiveLearningState) -> None:
    buf = io.BytesIO()
    np.savez(buf, fingerprint=np.array(fingerprint), state=np.frombuffer(state.to_bytes(), np.uint8))
    try:
        write_atomic(fs, path, buf.getvalue())
    except OSError as err:  # ENOSPC and friends: say which file could not be written
        raise OSError(err.errno, f"could not write the checkpoint {path}: {err.strerror or err}") from err
