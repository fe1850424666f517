"""Sweep planning: which models a sweep runs, each one's full job config, and the resources its engine pool asks.

No Ray calls here (only the placement-group bundle shapes of `pool.replica_bundles`), so a laptop without GPUs can
check that the `open_weight` and `paper` sweeps resolve to valid per-model resource requests.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .pool import replica_bundles

__all__ = ["ModelPlan", "plan_sweep", "model_fingerprint", "known_model_keys"]

# Config keys that change what a model answers or how its utilities are fitted; a finished model is reused by a
# re-submitted sweep only if these are unchanged.
_FINGERPRINT_KEYS = ("model", "outcomes", "elicitation", "fit", "seed", "experiment")


@dataclass
class ModelPlan:
    """One model of a sweep: its result name, its complete compute_utilities config and its resource request."""

    key: str
    config: dict
    engine: str
    replicas: int
    tensor_parallel_size: int
    num_cpus: float
    num_gpus_per_replica: float  # on a GPU cluster; CPU engines ask for none
    bundles: list[dict] = field(default_factory=list)  # placement-group bundles per replica (tp > 1 only)
    capability: float | None = None

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.config)


def model_fingerprint(cfg: dict) -> str:
    payload = json.dumps({k: cfg.get(k) for k in _FINGERPRINT_KEYS} | {"engine": cfg["engine"].get("name")},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def known_model_keys(conf_dir: Path) -> list[str]:
    return sorted(p.stem for p in (Path(conf_dir) / "model").glob("*.yaml"))


def _load_model(conf_dir: Path, key: str) -> dict:
    path = Path(conf_dir) / "model" / f"{key}.yaml"
    if not path.is_file():
        raise ValueError(f"sweep names unknown model {key!r}; known models: {', '.join(known_model_keys(conf_dir))}")
    return yaml.safe_load(path.read_text())


def _model_entry(conf_dir: Path, entry: object) -> dict:
    """A conf/model key, or {key: <result name>, base: <conf/model key>, <model field>: value, ...}."""
    if isinstance(entry, str):
        return _load_model(conf_dir, entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ValueError(f"a sweep model entry is a conf/model key or a mapping with 'key' (and 'base'), got {entry!r}")
    base = entry.get("base", entry["key"])
    model = _load_model(conf_dir, base)
    unknown = set(entry) - set(model) - {"key", "base"}
    if unknown:
        raise ValueError(f"sweep entry {entry['key']!r}: unknown model fields {sorted(unknown)}; "
                         f"known: {sorted(model)}")
    model.update({k: v for k, v in entry.items() if k != "base"})
    return model


def plan_sweep(cfg: dict, conf_dir: Path | str) -> list[ModelPlan]:
    """Resolve `cfg["sweep"]` into one ModelPlan per model; raises ValueError naming what is wrong."""
    sweep = cfg.get("sweep")
    if not sweep:
        raise ValueError("choose a sweep: sweep=open_weight|paper|cpu_demo|cpu_demo_simulated|custom "
                         "(custom takes 'sweep.models=[key,...]')")
    name = str(sweep.get("name") or "")
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"`sweep.name` must be a plain directory name, got {name!r}")
    entries = list(sweep.get("models") or [])
    if not entries:
        raise ValueError(f"sweep {name!r} lists no models; give 'sweep.models=[key,...]'")
    if cfg["experiment"]["name"] != "compute_utilities":
        raise ValueError(f"sweeps run experiment=compute_utilities, got {cfg['experiment']['name']!r}")
    overrides = sweep.get("engine_overrides") or {}
    plans, seen = [], set()
    for entry in entries:
        model = _model_entry(Path(conf_dir), entry)
        if model["key"] in seen:
            raise ValueError(f"sweep {name!r} lists model {model['key']!r} twice")
        seen.add(model["key"])
        model_cfg = copy.deepcopy(cfg)
        model_cfg["model"] = model
        engine_cfg = model_cfg["engine"]
        engine = engine_cfg.get("name") or model.get("engine")
        engine_cfg.update(copy.deepcopy(overrides.get(engine) or {}))
        engine_cfg["name"] = engine
        model_cfg["progress"] = False  # one sweep-level bar; per-model bars from many processes interleave
        tp = int(model.get("tensor_parallel_size") or 1) if engine == "vllm" else 1
        replicas = int(engine_cfg.get("replicas") or model.get("replicas") or 1)
        num_cpus = float(engine_cfg.get("num_cpus") or 1)
        gpus = engine_cfg.get("num_gpus")
        gpus = float(tp if engine == "vllm" else 0) if gpus is None else float(gpus)
        plans.append(ModelPlan(key=model["key"], config=model_cfg, engine=engine, replicas=replicas,
                               tensor_parallel_size=tp, num_cpus=num_cpus, num_gpus_per_replica=gpus,
                               bundles=replica_bundles(tp, num_cpus) if gpus > 0 and tp > 1 else [],
                               capability=model.get("mmlu")))
    return plans
