"""Starting or attaching to Ray: the one place a job decides which cluster it runs on."""

from __future__ import annotations

from .config import RayConfig

__all__ = ["ensure_ray"]


def ensure_ray(config: RayConfig | dict | None = None) -> None:
    """Attach to `ray.address` (RAY_ADDRESS) when set, else start a local cluster; a no-op when Ray is up (inside
    a Ray task, or a second job in one process)."""
    import ray

    if ray.is_initialized():
        return
    if config is None:
        config = RayConfig()
    elif isinstance(config, dict):
        config = RayConfig(**{k: v for k, v in (config.get("ray") or config).items() if k in ("address", "num_cpus")})
    address = config.address or None
    ray.init(address=address, num_cpus=None if address else config.num_cpus, log_to_driver=False,
             include_dashboard=False if not address else None)
