"""One progress-bar helper for long loops (tqdm imported only when a bar is shown)."""

from __future__ import annotations

__all__ = ["progress_bar"]


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, total: int, *, desc: str, unit: str, initial: int = 0, leave: bool = True):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave)
