"""Sweep planning: which models a sweep runs, each one's typed job config, and the resources its engine pool asks.

No Ray calls here, so a laptop without GPUs can check that the `open_weight` and `paper` sweeps resolve to valid
per-model resource requests. Model entries are composed through Hydra (`conf/model/<key>.yaml`), like a job's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ..core.outcomes import load_outcomes
from ..io.layout import check_name
from .config import ANALYSIS_SECTIONS, PoolResources, RunConfig, pool_resources

__all__ = ["ModelPlan", "plan_sweep", "known_model_keys", "load_model_entry", "DEFAULT_CONF"]

DEFAULT_CONF = Path(__file__).resolve().parents[2] / "conf"  # this checkout's Hydra config tree


@dataclass
class ModelPlan:
    """One model of a sweep: its result name, its complete job config (typed and as a dict) and its resources."""

    key: str
    config: dict
    run: RunConfig
    resources: PoolResources

    @property
    def experiment(self) -> str:
        return self.run.experiment

    @property
    def engine(self) -> str:
        return self.resources.engine

    @property
    def replicas(self) -> int:
        return self.resources.replicas

    @property
    def tensor_parallel_size(self) -> int:
        return self.resources.tensor_parallel_size

    @property
    def num_cpus(self) -> float:
        return self.resources.num_cpus

    @property
    def num_gpus_per_replica(self) -> float:
        return self.resources.num_gpus

    @property
    def bundles(self) -> list[dict]:
        """Placement-group bundles of one replica when it is tensor parallel ([] otherwise)."""
        return self.resources.bundles() if self.resources.tensor_parallel_size > 1 else []

    @property
    def capability(self) -> float | None:
        return self.run.model.mmlu

    @property
    def fingerprint(self) -> str:
        return self.run.fingerprint()


def known_model_keys(conf_dir: Path | str) -> list[str]:
    return sorted(p.stem for p in (Path(conf_dir) / "model").glob("*.yaml"))


def load_model_entry(conf_dir: Path | str, key: str) -> dict:
    """conf/model/<key>.yaml composed by Hydra (interpolations resolved), as a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf

    if key not in known_model_keys(conf_dir):
        from .config import nearest_names

        known = known_model_keys(conf_dir)
        near = nearest_names(str(key), known)
        raise ValueError(f"sweep names unknown model {key!r}" + (f"; did you mean {' or '.join(near)}?" if near else "")
                         + f" ({len(known)} models in {conf_dir}/model/)")
    hydra_state = GlobalHydra.instance()
    try:
        if hydra_state.is_initialized():  # inside a Hydra app (jobs.sweep): its config path is this conf/
            composed = compose(config_name=f"model/{key}")
        else:
            with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
                composed = compose(config_name=f"model/{key}")
    except MissingConfigException as err:
        raise ValueError(f"sweep model {key!r}: {err}") from err
    return OmegaConf.to_container(composed, resolve=True)["model"]


def _model_entry(conf_dir: Path, entry: object) -> dict:
    """A conf/model key, or {key: <result name>, base: <conf/model key>, <model field>: value, ...}."""
    if isinstance(entry, str):
        return load_model_entry(conf_dir, entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ValueError(f"a sweep model entry is a conf/model key or a mapping with 'key' (and 'base'), got {entry!r}")
    model = load_model_entry(conf_dir, entry.get("base", entry["key"]))
    unknown = set(entry) - set(model) - {"key", "base"}
    if unknown:
        raise ValueError(f"sweep entry {entry['key']!r}: unknown model fields {sorted(unknown)}; "
                         f"known: {sorted(model)}")
    model.update({k: v for k, v in entry.items() if k != "base"})
    return model


def _overrides(sweep: dict, section: str, engine: str) -> dict:
    return copy.deepcopy((sweep.get(f"{section}_overrides") or {}).get(engine) or {})


def load_experiment_entry(conf_dir: Path | str, name: str) -> dict:
    """conf/experiment/<name>.yaml composed by Hydra: {"experiment": {...}} and, for an analysis, its section."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    known = sorted(p.stem for p in (Path(conf_dir) / "experiment").glob("*.yaml"))
    if name not in known:
        raise ValueError(f"sweep names unknown experiment {name!r}; known experiments: {', '.join(known)}")
    if GlobalHydra.instance().is_initialized():
        composed = compose(config_name=f"experiment/{name}")
    else:
        with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
            composed = compose(config_name=f"experiment/{name}")
    return OmegaConf.to_container(composed, resolve=True)


def _experiment_configs(cfg: dict, sweep: dict, conf_dir: Path) -> list[dict]:
    """The config of each experiment of the sweep (`sweep.experiments`, default: the config's experiment), with
    `sweep.experiment_overrides.<experiment>` applied to its section (the documented reduced sizes)."""
    names = list(sweep.get("experiments") or [cfg["experiment"]["name"]])
    overrides = dict(sweep.get("experiment_overrides") or {})
    known = sorted(p.stem for p in (conf_dir / "experiment").glob("*.yaml"))
    for name in names:
        if name not in known:
            raise ValueError(f"sweep names unknown experiment {name!r}; known experiments: {', '.join(known)}")
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"sweep.experiment_overrides names experiments {unknown} the sweep does not run "
                         f"(sweep.experiments: {names})")
    if len(set(names)) != len(names):
        raise ValueError(f"sweep.experiments lists an experiment twice: {names}")
    out = []
    for name in names:
        experiment_cfg = copy.deepcopy(cfg)
        if name != cfg["experiment"]["name"]:
            for section in ANALYSIS_SECTIONS:
                experiment_cfg.pop(section, None)
            experiment_cfg.update(load_experiment_entry(conf_dir, name))
        if overrides.get(name):
            if name not in (*ANALYSIS_SECTIONS, "robustness"):
                raise ValueError(f"sweep.experiment_overrides.{name}: only analyses and robustness have settings "
                                 "to override")
            experiment_cfg[name] = {**(experiment_cfg.get(name) or {}), **overrides[name]}
        out.append(experiment_cfg)
    return out


def plan_sweep(cfg: dict, conf_dir: Path | str) -> list[ModelPlan]:
    """Resolve `cfg["sweep"]` into one ModelPlan per model and experiment (every experiment of a model in
    `sweep.experiments` order); raises ValueError naming what is wrong."""
    sweep = cfg.get("sweep")
    if not sweep:
        raise ValueError("choose a sweep: sweep=open_weight|paper|cpu_demo|cpu_demo_simulated|custom "
                         "(custom takes 'sweep.models=[key,...]')")
    name = check_name(str(sweep.get("name") or ""), "`sweep.name`")
    entries = list(sweep.get("models") or [])
    if not entries:
        raise ValueError(f"sweep {name!r} lists no models; give 'sweep.models=[key,...]'")
    known = ("name", "models", "engine_overrides", "pool_overrides", "report_n_boot", "start_timeout_s",
             "experiments", "experiment_overrides")
    unknown = sorted(set(sweep) - set(known))
    if unknown:
        raise ValueError(f"unknown `sweep` keys {unknown}; known: {sorted(known)}")
    outcomes = load_outcomes(cfg["outcomes"]["source"])  # once for all models (and checked before any starts)
    experiments = _experiment_configs(cfg, sweep, Path(conf_dir))
    models, seen = [], set()
    for entry in entries:
        model = _model_entry(Path(conf_dir), entry)
        if model["key"] in seen:
            raise ValueError(f"sweep {name!r} lists model {model['key']!r} twice")
        seen.add(model["key"])
        models.append(model)
    plans = []
    for model in models:
        for experiment_cfg in experiments:
            plans.append(_model_plan(name, sweep, experiment_cfg, copy.deepcopy(model), outcomes))
    return plans


def _model_plan(name: str, sweep: dict, cfg: dict, model: dict, outcomes) -> ModelPlan:
    model_cfg = copy.deepcopy(cfg)
    model_cfg["model"] = model
    engine = model_cfg["engine"].get("name") or model.get("engine")
    model_cfg["engine"].update(_overrides(sweep, "engine", engine))
    model_cfg["engine"]["name"] = engine
    pool_overrides = _overrides(sweep, "pool", engine)
    if "start_timeout_s" in pool_overrides:
        raise ValueError(f"sweep {name!r}: set the replicas' start timeout with sweep.start_timeout_s (a sweep's "
                         "models queue for each other's resources), not in sweep.pool_overrides")
    # a sweep's models queue for each other's resources: sweep.start_timeout_s (null: no limit) replaces
    # pool.start_timeout_s, which bounds a single job's wait
    model_cfg["pool"] = {**(model_cfg.get("pool") or {}), **pool_overrides,
                         "start_timeout_s": sweep.get("start_timeout_s")}
    model_cfg["progress"] = False  # one sweep-level bar; per-model bars from many processes interleave
    try:
        run = RunConfig.from_dict(model_cfg, outcomes=outcomes, check_environment=False)
        if run.analysis is not None:  # its items (and data files) checked before anything starts
            from ..analyses import get_analysis

            get_analysis(run.experiment).plan(run.analysis, outcomes, run.seed)
    except (ValueError, TypeError) as err:
        raise ValueError(f"sweep {name!r}, model {model['key']!r}, experiment "
                         f"{model_cfg['experiment']['name']!r}: {err}") from err
    return ModelPlan(key=model["key"], config=model_cfg, run=run, resources=pool_resources(run))
