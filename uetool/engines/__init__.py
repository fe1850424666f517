"""Engines behind one protocol, registered in one place with deferred imports (optional dependencies)."""

from __future__ import annotations

from .base import ElicitationRequest, ElicitationResult, Engine, EngineError, GenerationSettings

__all__ = ["ElicitationRequest", "ElicitationResult", "Engine", "EngineError", "GenerationSettings", "create_engine",
           "ENGINE_NAMES"]

ENGINE_NAMES = ("hf", "vllm", "openai", "simulated")
_EXTRAS = {"hf": "hf", "vllm": "vllm", "openai": "openai", "simulated": None}


def create_engine(name: str, **kwargs) -> Engine:
    """Build an engine by name; a missing optional dependency names the pip extra to install."""
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine '{name}'; known: {ENGINE_NAMES}")
    try:
        if name == "hf":
            from .hf import HFEngine as cls
        elif name == "vllm":
            raise NotImplementedError("the vllm engine is not in this version yet; run open-weight models with "
                                      "engine=hf (transformers) meanwhile")
        elif name == "openai":
            from .openai import OpenAIEngine as cls
        else:
            from .simulated import SimulatedEngine as cls
    except ImportError as err:
        raise ImportError(f"engine '{name}' needs an optional dependency ({err.name}); "
                          f"install it with: pip install -e \".[{_EXTRAS[name]}]\"") from err
    return cls(**kwargs)
