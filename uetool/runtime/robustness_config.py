"""The `robustness` section (conf/robustness/): a suite of declared variants of the run's elicitation.

Each variant names itself and overrides `elicitation.*` keys (template, template_text, labels, system_message,
mode, k, temperature, max_tokens, parser, unparseable_policy) and, optionally, the `seed`. `analyses` lists the
analyses (exchange_rates, political_values) run again under every variant (not the seeds), with
`analysis_overrides.<analysis>` applied to their sections (reduced sizes). Validated once, at the edge, with errors
naming the variant and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..io.layout import check_name
from .control_config import typed_section

__all__ = ["RobustnessConfig", "Variant", "ELICITATION_KEYS", "VARIED_ANALYSES"]

VARIED_ANALYSES = ("exchange_rates", "political_values")  # analyses with a variant-against-base comparison

ELICITATION_KEYS = ("template", "template_text", "labels", "system_message", "mode", "k", "temperature", "max_tokens",
                    "parser", "unparseable_policy")


@dataclass(frozen=True)
class Variant:
    name: str
    elicitation: dict  # elicitation.* overrides
    seed: int | None = None
    about: str = ""  # what the variant tests, for the report

    @classmethod
    def from_entry(cls, entry: dict, where: str) -> Variant:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where}: a variant is an object with a 'name' and elicitation keys, got {entry!r}")
        entry = dict(entry)
        name = check_name(str(entry.pop("name")), f"{where}.name")
        seed = entry.pop("seed", None)
        about = str(entry.pop("about", ""))
        unknown = sorted(set(entry) - set(ELICITATION_KEYS))
        if unknown:
            raise ValueError(f"{where} ({name}): unknown keys {unknown}; a variant sets name, about, seed and "
                             f"elicitation keys {list(ELICITATION_KEYS)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"{where} ({name}): seed must be an integer >= 0, got {seed!r}")
        if not entry and seed is None:
            raise ValueError(f"{where} ({name}): changes nothing (give elicitation keys or a seed)")
        return cls(name, entry, seed, about)


@dataclass(frozen=True)
class RobustnessConfig:
    name: str = "default"  # results in <root>/robustness/<model>/<name>/
    variants: tuple = field(default_factory=tuple)
    seeds: tuple = (1, 2)  # the base run repeated with these seeds: between-seed spread of every metric
    n_boot: int = 1000
    analyses: tuple = ()  # analyses run again under every variant: exchange_rates, political_values
    analysis_overrides: dict = field(default_factory=dict)  # analysis -> {key: value} for its section

    def __post_init__(self) -> None:
        check_name(self.name, "`robustness.name`")
        variants = tuple(v if isinstance(v, Variant) else Variant.from_entry(v, f"`robustness.variants[{i}]`")
                         for i, v in enumerate(self.variants or ()))
        names = [v.name for v in variants] + [f"seed_{s}" for s in self.seeds or ()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"`robustness`: variant names must differ, {repeated} repeat")
        object.__setattr__(self, "variants", variants)
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds or ()))
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 100:
            raise ValueError(f"`robustness.n_boot` must be an integer >= 100, got {self.n_boot!r}")
        analyses = tuple(self.analyses or ())
        unknown = [a for a in analyses if a not in VARIED_ANALYSES]
        if unknown or len(set(analyses)) != len(analyses):
            raise ValueError(f"`robustness.analyses` lists analyses from {list(VARIED_ANALYSES)}, each once; got "
                             f"{list(analyses)}")
        overrides = dict(self.analysis_overrides or {})
        # overrides of an analysis the suite does not run are kept, unused: `analyses=[]` switches them off
        stray = sorted(set(overrides) - set(VARIED_ANALYSES))
        if stray or not all(isinstance(v, dict) for v in overrides.values()):
            raise ValueError(f"`robustness.analysis_overrides` maps analyses from {list(VARIED_ANALYSES)} to their "
                             f"keys; got {overrides!r}")
        object.__setattr__(self, "analyses", analyses)
        object.__setattr__(self, "analysis_overrides", overrides)

    @classmethod
    def from_section(cls, values: dict | None) -> RobustnessConfig:
        return typed_section(cls, "robustness", values)
