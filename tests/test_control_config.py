"""The assembly, sft and control sections: conf/ and the typed defaults agree, bad values are named."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tests.conftest import ROOT, compose
from uetool.runtime.config import RunConfig
from uetool.runtime.control_config import AssemblyConfig, ControlConfig, SFTSection


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        value = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def test_conf_defaults_equal_the_dataclass_defaults():
    assert yaml.safe_load((ROOT / "conf" / "assembly" / "default.yaml").read_text()) == _defaults(AssemblyConfig)
    assert yaml.safe_load((ROOT / "conf" / "sft" / "cpu.yaml").read_text()) == {
        **_defaults(SFTSection), "deepspeed": {"stage": 3, "offload_optimizer": False, "offload_parameters": False}}
    assert yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["control"] == _defaults(ControlConfig)


def test_sections_compose_and_type():
    run = RunConfig.from_dict(compose(["assembly=planted_animals", "sft=llama70b_offload_16gpu"]))
    assert run.assembly.planted_category == "animal_wellbeing" and run.assembly.population == 120
    assert run.sft.num_workers == 16 and run.sft.deepspeed["offload_optimizer"] is True and run.sft.bf16 is True
    options = run.sft.options(seed=3)
    assert options.deepspeed["zero_optimization"]["offload_optimizer"]["device"] == "cpu" and options.seed == 3
    assert run.control.eval_mode == "logprob"


@pytest.mark.parametrize("override, message", [
    ("assembly.mode=greedy", "`assembly.mode` must be sample or logprob"),
    ("assembly.citizens_per_question=700", "exceeds `assembly.population`=600"),
    ("assembly.k=0", "`assembly.k` must be an integer >= 1"),
    ("assembly.name=../x", "`assembly.name` must be a plain name"),
    ("+assembly.size=3", "unknown `assembly` keys ['size']"),
    ("+sft.deepspeed.zero=3", "unknown `sft.deepspeed` keys ['zero']"),
    ("sft.test_fraction=1.5", "`sft.test_fraction` must be in (0, 1)"),
    ("control.eval_mode=generate", "`control.eval_mode` must be sample or logprob"),
    ("control.maximization=3", "`control.maximization` must be true or false"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(ValueError) as err:
        RunConfig.from_dict(compose([override]))
    assert message in str(err.value)


def test_a_maximization_typo_fails_before_the_control_job_trains():
    with pytest.raises(ValueError, match=r"unknown `maximization` keys \['top'\]"):
        RunConfig.from_dict(compose(["control.maximization=true", "+maximization.top=3"]))
    RunConfig.from_dict(compose(["+maximization.top=3"]))  # not asked for: not read


def test_a_political_values_typo_fails_before_the_control_job_trains():
    with pytest.raises(ValueError, match=r"unknown `political_values` keys \['max_policy'\]"):
        RunConfig.from_dict(compose(["control.political=true", "+political_values.max_policy=3"]))
    with pytest.raises(ValueError, match="`control.political` must be true or false"):
        RunConfig.from_dict(compose(["control.political=sometimes"]))
