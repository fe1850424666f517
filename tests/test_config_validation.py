"""Bad configs fail before any engine starts, with messages that say what is valid; the typed config is the one
source of defaults, of request-key settings and of pool resources."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hydra.errors import MissingConfigException

from tests.conftest import ROOT, compose
from uetool.core.outcomes import OutcomeError
from uetool.runtime.config import (
    MOVED_TO_POOL,
    PoolConfig,
    RunConfig,
    pool_resources,
    redacted_yaml,
    validate_config,
)


def test_every_group_entry_composes():
    for override in ("elicitation=logprob", "elicitation=reasoning", "outcomes=main", "engine=openai",
                     "model=gpt-4o", "model=llama-31-70b-instruct", "engine=simulated_text", "engine=vllm"):
        cfg = compose([override])
        assert cfg["experiment"]["name"] == "compute_utilities"
        assert set(cfg["pool"]) == {f.name for f in dataclasses.fields(PoolConfig)}


def test_unknown_model_lists_valid_keys():
    with pytest.raises(MissingConfigException) as err:
        compose(["model=llama-3-8b"])
    assert "llama-31-8b-instruct" in str(err.value.options) or "Available options" in str(err.value)


def test_missing_outcome_file_fails_before_engines(tmp_path):
    cfg = compose(["outcomes=custom", f"outcomes.source={tmp_path / 'nope.json'}"])
    with pytest.raises(OutcomeError, match="neither a file nor a built-in set"):
        validate_config(cfg)


def test_malformed_outcome_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('["only one outcome."]')
    with pytest.raises(OutcomeError, match="at least 2"):
        validate_config(compose(["outcomes=custom", f"outcomes.source={bad}"]))


@pytest.mark.parametrize(("override", "message"), [
    ("elicitation.k=0", "`elicitation.k` must be >= 1, got 0"),
    ("elicitation.mode=greedy", "`elicitation.mode` must be 'sample', 'logprob' or 'generate'"),
    ("elicitation.parser=loose", "`elicitation.parser`"),
    ("fit.p_percent=0", "`p_percent` must be in"),
    ("elicitation.template=nope", "unknown template"),
    ("engine.name=tgi", "`engine.name` must be one of"),
    ("engine.prefix_cache=sometimes", "`engine.prefix_cache` must be true or false"),
    ("pool.replicas=0", "`pool.replicas` must be >= 1 or null, got 0"),
    ("pool.shard_size=0", "`pool.shard_size` must be >= 1 or null"),
    ("pool.start_timeout_s=-1", "`pool.start_timeout_s` must be > 0 or null"),
    ("fit.backend=cloud", "`fit.backend` must be one of"),
    ("+fit.ray_train.workers=2", "unknown `fit.ray_train` keys ['workers']"),
    ("+fit.edge_multiplyer=3", "unknown `fit` keys ['edge_multiplyer']"),
    ("+pool.num_cpu=3", "unknown `pool` keys ['num_cpu']"),
    ("+elicitation.temprature=0.5", "unknown `elicitation` keys ['temprature']"),
    ("+engine.batchsize=3", "unknown `engine` keys ['batchsize']"),
    ("+model.weights=/x", "unknown `model` keys ['weights']"),
    ("+seeed=1", "unknown `config` keys ['seeed']"),
    ("elicitation=reasoning", None),
    ("+fit.n_triads=5", "`fit.n_triads` is now `transitivity.n_triads`"),
    ("transitivity.n_triads=-1", "`transitivity.n_triads` must be an integer >= 0"),
    ("trends.mix_modes=sometimes", "`trends.mix_modes` must be true or false"),
    ("seed=abc", "`seed` must be an integer >= 0, got 'abc'"),
    ("seed=-1", "`seed` must be an integer >= 0"),
    ("model.key=../../../../tmp/x", "`model.key` must be a plain name"),
    ("model.key=..", "`model.key` must be a plain name"),
    ("model.key=a/b", "`model.key` must be a plain name"),
    ("experiment.name=../up", "`experiment.name` must be a plain name"),
    ("elicitation.max_attempts=0", "`elicitation.max_attempts` must be an integer >= 1"),
    ("elicitation.max_failure_rate=1.5", "`elicitation.max_failure_rate` must be in [0, 1]"),
    ("+trends.mix_mode=true", "unknown `trends` keys ['mix_mode']"),
    ("fit=paper", None),
    ("fit.quantile_pool=most", "`quantile_pool` must be one of all, remaining"),
    ("fit.pair_selection=greedy", "`pair_selection` must be one of active, random"),
    ("fit.max_widen=-1", "`max_widen` must be >= 0"),
])
def test_invalid_values_name_the_key(override, message):
    if message is None:  # a valid neighbour of an invalid value
        validate_config(compose([override]))
        return
    with pytest.raises(ValueError) as err:
        validate_config(compose([override]))
    assert message in str(err.value)


def test_logprob_mode_refuses_a_reasoning_template():
    with pytest.raises(ValueError, match="asks the model to reason before it answers"):
        validate_config(compose(["elicitation=reasoning", "elicitation.mode=logprob"]))


def test_unknown_keys_list_the_known_ones():
    with pytest.raises(ValueError) as err:
        validate_config(compose(["+pool.num_cpu=3"]))
    for known in ("num_cpus", "shard_size", "replicas", "batch_size"):
        assert known in str(err.value)


@pytest.mark.parametrize("key", MOVED_TO_POOL)
def test_old_engine_spellings_name_the_new_key(key):
    with pytest.raises(ValueError, match=f"`engine.{key}` is now `pool.{key}`"):
        validate_config(compose([f"+engine.{key}=4"]))


def test_retired_local_channel_says_why():
    with pytest.raises(ValueError, match="Ray actor calls are the transport"):
        validate_config(compose(["+engine.local_channel=true"]))


def test_missing_api_key_named(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        validate_config(compose(["model=gpt-4o"]))


def test_saved_config_never_holds_secrets():
    text = redacted_yaml({"model": {"api_key_env": "OPENAI_API_KEY", "api_key": "sk-live-123"},
                          "engine": {"kwargs": {"token": "hf_abc"}}})
    assert "sk-live-123" not in text and "hf_abc" not in text and "OPENAI_API_KEY" in text
    kept = yaml.safe_load(redacted_yaml({"model": {"key": "smollm2-135m-instruct", "tokenizer": "gpt2",
                                                   "max_tokens": 10, "note": "sk-" + "a" * 30},
                                         "engine": {"kwargs": {"access_key": "AKIA1", "hf_token": "x"}}}))
    assert kept["model"]["key"] == "smollm2-135m-instruct" and kept["model"]["tokenizer"] == "gpt2"
    assert kept["model"]["note"] == "<redacted>"  # an API key's shape, whatever its key is called
    assert kept["engine"]["kwargs"] == {"access_key": "<redacted>", "hf_token": "<redacted>"}


def test_conf_pool_defaults_equal_the_dataclass_defaults():
    """conf/pool/default.yaml and PoolConfig are the same defaults (the YAML is what users read)."""
    from_yaml = yaml.safe_load((ROOT / "conf" / "pool" / "default.yaml").read_text())
    from_code = {f.name: f.default for f in dataclasses.fields(PoolConfig)}
    assert from_yaml == from_code


def test_conf_fit_schedule_defaults_equal_the_core_defaults():
    """conf/fit/thurstonian.yaml (what a job runs) and ActiveLearningConfig (what the core runs) agree; `fit=paper`
    differs from it in the pseudolabels alone (README "Active-learning schedule")."""
    from uetool.core.active import ActiveLearningConfig

    defaults = {f.name: f.default for f in dataclasses.fields(ActiveLearningConfig)}
    run = RunConfig.from_dict(compose([]), check_environment=False)
    assert run.fit.active and all(defaults[k] == v for k, v in run.fit.active.items())
    paper = RunConfig.from_dict(compose(["fit=paper"]), check_environment=False).fit.active
    changed = {k: v for k, v in paper.items() if v != defaults[k]}
    assert changed == {"use_pseudolabels": True, "pseudolabel_candidates": None}
    assert {"max_widen", "quantile_pool", "top_up_initial"} <= set(paper)  # spelled out: it stays the reference's


@pytest.mark.parametrize("engine", ["hf", "vllm", "openai", "simulated", "simulated_text"])
def test_conf_engine_entries_are_the_engine_options(engine):
    """conf/engine/<name>.yaml sets exactly the options its engine class declares, with the same defaults."""
    from uetool.engines import engine_class

    entry = yaml.safe_load((ROOT / "conf" / "engine" / f"{engine}.yaml").read_text())
    assert entry.pop("name") == engine and entry.pop("kwargs") == {}
    assert entry == engine_class(engine).options


# --- request keys hold what changes answers, and only that --------------------------------------------------------

def _key_settings(overrides: list[str]) -> dict:
    run = RunConfig.from_dict(compose(overrides), check_environment=False)
    return run.answer_settings(run.engine_arguments(pool_resources(run)))


_POOL_SETTINGS = ["pool.num_cpus=7", "pool.batch_size=3", "pool.shard_size=5", "pool.replicas=4", "pool.num_gpus=1",
                  "pool.start_timeout_s=5", "pool.autoscale=true"]
_RESOURCE_CASES = [
    *[(["model=tiny-random"], r) for r in [*_POOL_SETTINGS, "engine.prefix_cache=false"]],
    *[(["model=llama-31-8b-instruct", "engine=vllm"], r) for r in [
        *_POOL_SETTINGS[:4], "pool.start_timeout_s=5", "engine.gpu_memory_utilization=0.5",
        "engine.enable_prefix_caching=false"]],
    *[(["model=gpt-4o"], r) for r in [*_POOL_SETTINGS, "engine.max_concurrency=2"]],
    *[(["model=sim-scale-1"], r) for r in _POOL_SETTINGS],
]


@pytest.mark.parametrize(("base", "resource"), _RESOURCE_CASES)
def test_resource_settings_never_change_request_keys(base, resource):
    assert _key_settings(base + [resource]) == _key_settings(base)


def test_another_engines_options_are_refused():
    with pytest.raises(ValueError, match=r"`engine` keys \['gpu_memory_utilization'\] belong to other engines than "
                                         r"'hf'"):
        validate_config(compose(["engine=hf", "+engine.gpu_memory_utilization=0.5"]))
    with pytest.raises(ValueError, match="belong to other engines than 'vllm'"):
        validate_config(compose(["model=tiny-random", "engine.name=vllm", "engine.prefix_cache=false"]))


def test_sampling_settings_enter_keys_only_when_they_change_answers():
    from uetool.engines.base import GenerationSettings
    from uetool.runtime.elicit import sampling_key

    sample = GenerationSettings(mode="sample", temperature=1.0, max_tokens=10)
    assert sampling_key(sample) != sampling_key(GenerationSettings(mode="sample", temperature=0.0, max_tokens=10))
    assert sampling_key(sample) != sampling_key(GenerationSettings(mode="sample", temperature=1.0, max_tokens=20))
    logprob = GenerationSettings(mode="logprob", temperature=1.0, max_tokens=1)
    assert sampling_key(logprob) == sampling_key(GenerationSettings(mode="logprob", temperature=0.3, max_tokens=9))


def test_defaults_written_out_change_no_key():
    assert _key_settings(["model=tiny-random", "engine=simulated", "+engine.kwargs={}"]) == \
        _key_settings(["model=tiny-random", "engine=simulated"])
    plain = RunConfig.from_dict(compose(["model=tiny-random", "engine=simulated"]))
    explicit = plain.answer_settings({**plain.engine_arguments(), "bias": 0.3, "refusal_rate": 0.2})
    assert explicit == plain.answer_settings()


@pytest.mark.parametrize(("base", "answer_setting"), [
    (["model=tiny-random"], "model.path=/elsewhere"), (["model=tiny-random"], "model.revision=abc"),
    (["model=tiny-random"], "model.dtype=float16"), (["model=tiny-random"], "model.kind=base"),
    (["model=llama-31-8b-instruct", "engine=vllm"], "model.max_model_len=2048"),
    (["model=gpt-4o"], "model.api_base=http://other"),
    (["model=tiny-random", "engine=simulated"], "engine.agent=random"),
    (["model=sim-scale-1"], "model.simulated.scale=2"),
    (["model=tiny-random"], "+engine.kwargs.attn_implementation=eager"),
])
def test_answer_settings_change_request_keys(base, answer_setting):
    assert _key_settings(base + [answer_setting]) != _key_settings(base)


def test_one_fingerprint_for_job_and_sweep():
    from uetool.runtime.sweep_plan import plan_sweep

    cfg = compose(["sweep=custom", "sweep.models=[sim-scale-1]"])
    plan = plan_sweep(cfg, ROOT / "conf")[0]
    job = RunConfig.from_dict({**cfg, "model": plan.config["model"]})
    assert plan.fingerprint == job.fingerprint()
    assert job.fingerprint() != RunConfig.from_dict({**cfg, "model": plan.config["model"], "seed": 1}).fingerprint()
    # resources and metadata are not part of it: a resumed or re-submitted run with more CPUs, replicas or fit
    # workers (or a corrected capability score) reuses its checkpoint and its finished results
    same = [{"pool": {**cfg["pool"], "num_cpus": 8}}, {"model": {**plan.config["model"], "replicas": 3}},
            {"model": {**plan.config["model"], "mmlu": 12.5}},
            {"fit": {**cfg["fit"], "bootstrap_tasks": 4, "backend": "ray_train",
                     "ray_train": {**cfg["fit"]["ray_train"], "num_workers": 5}}}]
    for change in same:
        assert RunConfig.from_dict({**cfg, "model": plan.config["model"], **change}).fingerprint() == \
            job.fingerprint(), change
    assert RunConfig.from_dict({**cfg, "model": plan.config["model"], "fit": {**cfg["fit"], "bootstrap": 7}}) \
        .fingerprint() != job.fingerprint()


def test_pool_resources_are_derived_once():
    run = RunConfig.from_dict(compose(["model=llama-31-70b-instruct", "engine=vllm"]), check_environment=False)
    on_gpus, on_cpus = pool_resources(run), pool_resources(run, cluster_has_gpus=False)
    assert on_gpus.num_gpus == on_gpus.tensor_parallel_size == run.model.tensor_parallel_size > 1
    assert len(on_gpus.bundles()) == on_gpus.tensor_parallel_size and on_cpus.num_gpus == 0
    simulated = pool_resources(RunConfig.from_dict(compose(["model=sim-scale-1"])))
    assert simulated.shard_size == 1000 and simulated.num_gpus == 0  # the engine's own shard size


def test_a_thinking_model_gets_its_own_reply_budget():
    qwq = RunConfig.from_dict(compose(["model=qwq-32b-preview", "engine=vllm"]), check_environment=False)
    assert qwq.model.max_tokens == 3072 and qwq.generation_settings.max_tokens == 3072
    logprob = RunConfig.from_dict(compose(["model=qwq-32b-preview", "engine=vllm", "elicitation=logprob"]),
                                  check_environment=False)
    assert logprob.generation_settings.max_tokens == 1  # one next-token distribution: no budget to give
    other = RunConfig.from_dict(compose(["model=llama-31-8b-instruct", "engine=vllm"]), check_environment=False)
    assert other.generation_settings.max_tokens == 10  # the paper's budget for everyone else
