"""Typed config sections of utility control: `assembly` (conf/assembly/), `sft` (conf/sft/) and `control`.

Validated once, at the edge (`from_section`), with errors that name the key and what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..io.layout import check_name

__all__ = ["AssemblyConfig", "SFTSection", "ControlConfig", "DEFAULT_STEERING", "typed_section"]

# the paper's authors added a line so that partisan personas did not default to moderate views: here it is config
DEFAULT_STEERING = {
    "Republican": "Your views are those of a typical Republican voter, not a moderate's.",
    "Democrat": "Your views are those of a typical Democratic voter, not a moderate's.",
}


def typed_section(cls, name: str, values: dict | None):
    """`cls(**values)` for the config section `name`; unknown keys are an error listing the known ones."""
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown `{name}` keys {unknown}; known: {sorted(known)}")
    return cls(**values)


@dataclass(frozen=True)
class AssemblyConfig:
    name: str = "default"  # results in <root>/assembly/<name>/<model simulating the citizens>/
    model: str | None = None  # conf/model key simulating the citizens (control job; null: the model tuned)
    citizens: str = "builtin"  # builtin census marginals, or the path of an ACS PUMS person CSV (PWGTP weights)
    population: int = 600  # citizens drawn; each question's assembly is drawn from them
    citizens_per_question: int = 6
    n_questions: int = 500
    contrast_category: str | None = None  # every question pairs an outcome of this category with one outside it
    mode: str = "sample"  # each citizen answers once per order at T=1 by default
    k: int = 1
    temperature: float = 1.0
    persona_template: str | None = None  # null: core.citizens.DEFAULT_PERSONA_TEMPLATE
    steering: dict = field(default_factory=lambda: dict(DEFAULT_STEERING))
    planted_category: str | None = None  # simulated citizens only: the category the assembly prefers
    planted_strength: float = 3.0

    def __post_init__(self) -> None:
        check_name(self.name, "`assembly.name`")
        if self.mode not in ("sample", "logprob"):
            raise ValueError(f"`assembly.mode` must be sample or logprob, got {self.mode!r}")
        for key in ("population", "citizens_per_question", "n_questions", "k"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`assembly.{key}` must be an integer >= 1, got {value!r}")
        if self.citizens_per_question > self.population:
            raise ValueError(f"`assembly.citizens_per_question`={self.citizens_per_question} exceeds "
                             f"`assembly.population`={self.population}")
        object.__setattr__(self, "steering", {str(k): str(v) for k, v in dict(self.steering or {}).items()})

    @classmethod
    def from_section(cls, values: dict | None) -> AssemblyConfig:
        return typed_section(cls, "assembly", values)


@dataclass(frozen=True)
class SFTSection:
    """conf/sft/<name>.yaml: Ray Train scaling, the trainer's arguments, DeepSpeed and LoRA."""

    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    epochs: float = 2.0
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 20
    checkpoints_to_keep: int = 2
    max_failures: int = 2
    report_to: tuple = ()  # TRL/transformers integrations: tensorboard, mlflow, wandb, ...
    deepspeed: dict | None = field(default_factory=lambda: {"stage": 3})  # null: plain DDP
    lora: dict | None = None  # {r, alpha, dropout, target_modules}
    test_fraction: float = 0.2
    max_train_questions: int | None = None
    node_type: dict | None = None  # {name, gpus, gpu_memory_gib, host_memory_gib}: checked before training
    architecture: dict | None = None  # {parameters, hidden_size, layers}: for the memory check without weights

    def __post_init__(self) -> None:
        object.__setattr__(self, "report_to", tuple(self.report_to or ()))
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"`sft.test_fraction` must be in (0, 1), got {self.test_fraction!r}")
        if self.deepspeed is not None:
            unknown = sorted(set(self.deepspeed) - {"stage", "offload_optimizer", "offload_parameters"})
            if unknown:
                raise ValueError(f"unknown `sft.deepspeed` keys {unknown}; known: offload_optimizer, "
                                 "offload_parameters, stage")
        if self.lora is not None:
            unknown = sorted(set(self.lora) - {"r", "alpha", "dropout", "target_modules"})
            if unknown:
                raise ValueError(f"unknown `sft.lora` keys {unknown}; known: alpha, dropout, r, target_modules")
        if self.num_workers < 1 or self.per_device_batch_size < 1 or self.epochs <= 0:
            raise ValueError("`sft.num_workers`, `sft.per_device_batch_size` and `sft.epochs` must be positive")

    @classmethod
    def from_section(cls, values: dict | None) -> SFTSection:
        return typed_section(cls, "sft", values)

    def options(self, seed: int):
        """The trainer's options (`uetool.sft.ray_sft.SFTOptions`)."""
        from ..sft.ds_config import deepspeed_config
        from ..sft.ray_sft import LoraOptions, SFTOptions

        ds = {} if self.deepspeed is None else deepspeed_config(
            int(self.deepspeed.get("stage", 3)), offload_optimizer=bool(self.deepspeed.get("offload_optimizer")),
            offload_parameters=bool(self.deepspeed.get("offload_parameters")))
        lora = None
        if self.lora is not None:
            values = dict(self.lora)
            if "target_modules" in values:
                values["target_modules"] = tuple(values["target_modules"])
            lora = LoraOptions(**values)
        # the trainer's options are this section's fields of the same names, plus the seed and the built configs
        shared = {f.name: getattr(self, f.name) for f in fields(SFTOptions) if f.name not in ("seed", "deepspeed",
                                                                                           "lora")}
        return SFTOptions(**shared, seed=seed, deepspeed=ds, lora=lora)


@dataclass(frozen=True)
class ControlConfig:
    name: str = "default"  # results in <root>/control/<name>/<model>/
    eval_mode: str = "logprob"  # how the model is asked before and after tuning (logprob: P(A), no sampling)
    eval_k: int = 1
    capability: bool = True  # loss on held-out text and accuracy on the project's multiple-choice set
    coherence_outcomes: str | None = None  # an outcome set (name or path): compute_utilities before and after
    maximization: bool = False  # the utility-maximisation analysis (its `maximization.*` section) before and after
    political: bool = False  # political_values (its section) for the base model; the tuned model placed in its PCA
    dry_run: bool = False  # build the DeepSpeed config and check memory against sft.node_type, then stop

    def __post_init__(self) -> None:
        check_name(self.name, "`control.name`")
        if self.eval_mode not in ("sample", "logprob"):
            raise ValueError(f"`control.eval_mode` must be sample or logprob, got {self.eval_mode!r}")
        for key in ("maximization", "political", "capability", "dry_run"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"`control.{key}` must be true or false, got {getattr(self, key)!r}")

    @classmethod
    def from_section(cls, values: dict | None) -> ControlConfig:
        return typed_section(cls, "control", values)
