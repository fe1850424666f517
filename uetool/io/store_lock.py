"""One job at a time per response store: an advisory lock held by the job (the process), not by each writer.

Two jobs that ask the same requests at once would both ask and store every one of them; with sampling, the
published utilities could then not be reproduced from the store. So a job holds `<store>/.lock` while it writes:

- Local disks: `fcntl.flock` on the lock file. The kernel releases it when the holding process exits in any way,
  SIGKILL included, so a killed job's lock is taken over at once and safely (there is no stale state to judge).
  The file names the holder (host, pid, command, since when) for the waiting job's message.
- Every store a process opens on one path shares one lock (several experiments, entities or variants of one model
  in one job), counted by holders; it is released when the last lets go.
- Object stores (s3://, gs://, ...) have no lock a crashed job would release: there the store is not locked (a
  warning says so once); run one job per store there. Reads stay consistent either way (first answer wins).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass

__all__ = ["StoreLocked", "hold_store_lock"]

_POLL_S = 0.5
_held: dict[str, list] = {}  # real path -> [fd, holders]
_guard = threading.Lock()


class StoreLocked(RuntimeError):
    """Another job holds the response store's lock."""


@dataclass
class _Holding:
    path: str | None  # None: not locked (an object store)

    def release(self) -> None:
        if self.path is None:
            return
        with _guard:
            entry = _held.get(self.path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del _held[self.path]
                os.close(entry[0])  # closing the descriptor releases the flock
        self.path = None

    def __enter__(self) -> _Holding:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold_store_lock(store_dir: str, *, local: bool, wait_s: float | None = 0.0) -> _Holding:
    """Take the store's lock for this process (or share the one it holds); wait up to `wait_s` seconds for another
    job to let go (None: as long as it takes), then raise StoreLocked naming the holder."""
    if not local:
        warnings.warn(f"the response store at {store_dir} is on an object store, which offers no lock: run one job "
                      f"per store there", stacklevel=2)
        return _Holding(None)
    import fcntl

    path = os.path.realpath(os.path.join(store_dir, ".lock"))
    with _guard:
        if path in _held:
            _held[path][1] += 1
            return _Holding(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    started, announced = time.monotonic(), False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced and wait_s != 0:
                    print(f"waiting for the response store {store_dir}, in use by another job ({_holder(fd)})",
                          flush=True)
                    announced = True
                if wait_s is not None and time.monotonic() - started >= wait_s:
                    raise StoreLocked(f"the response store {store_dir} is in use by another job ({_holder(fd)}); "
                                      f"waited {time.monotonic() - started:.0f} s (store.lock_wait_s={wait_s:g}). "
                                      f"Let that job finish, or give this one another results_root") from None
                time.sleep(_POLL_S)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[path] = [fd, 1]
    return _Holding(path)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {info.get('command')}"
