"""uetool: utility engineering for language models.

`import uetool` stays light: the public API below loads on first use (and torch, Ray, vLLM only where needed).

    uetool.compute_utilities(cfg)        run the compute_utilities job for one model (cfg: resolved config dict)
    uetool.run_sweep(cfg)                every model of cfg["sweep"], one engine pool each, plus the report
    uetool.fit_thurstonian(n, a, b, p)   the Thurstonian fit on edge arrays (the pure core)
    uetool.load_results(path)            a run's results folder: utilities, edges, metrics, config, provenance
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_API = {
    "compute_utilities": ("uetool.runtime.compute", "compute_utilities"),
    "run_sweep": ("uetool.runtime.sweep", "run_sweep"),
    "fit_thurstonian": ("uetool.core.thurstonian", "fit_thurstonian"),
    "load_results": ("uetool.io.results", "read_results"),
}
__all__ = ["__version__", "compute_utilities", "run_sweep", "fit_thurstonian", "load_results"]

if TYPE_CHECKING:  # pragma: no cover
    from uetool.core.thurstonian import fit_thurstonian
    from uetool.io.results import read_results as load_results
    from uetool.runtime.compute import compute_utilities
    from uetool.runtime.sweep import run_sweep


def __getattr__(name: str):
    if name in _API:
        module, attribute = _API[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'uetool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
