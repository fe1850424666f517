"""Bad configs fail before any engine starts, with messages that say what is valid."""

from __future__ import annotations

import pytest
from hydra.errors import MissingConfigException

from tests.conftest import compose
from uetool.core.outcomes import OutcomeError
from uetool.runtime.compute import _redacted_yaml, validate_config


def test_every_group_entry_composes():
    for override in ("elicitation=logprob", "elicitation=reasoning", "outcomes=main", "engine=openai",
                     "model=gpt-4o", "model=llama-31-70b-instruct"):
        cfg = compose([override])
        assert cfg["experiment"]["name"] == "compute_utilities"


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
    ("elicitation.mode=greedy", "`elicitation.mode` must be 'sample' or 'logprob'"),
    ("elicitation.parser=loose", "`elicitation.parser`"),
    ("fit.p_percent=0", "`p_percent` must be in"),
    ("elicitation.template=nope", "unknown template"),
    ("engine.name=tgi", "`engine.name` must be one of"),
    ("engine.local_channel=sometimes", "`engine.local_channel` must be true, false or null"),
    ("engine.prefix_cache=sometimes", "`engine.prefix_cache` must be true or false"),
])
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(compose([override]))


def test_local_channel_defaults_to_the_simulated_engine_only():
    from uetool.runtime.compute import local_channel_for

    assert local_channel_for("simulated", None) and not local_channel_for("hf", None)
    assert local_channel_for("hf", True) and not local_channel_for("simulated", False)
    assert compose(["engine=simulated"])["engine"]["local_channel"] is None


def test_missing_api_key_named(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        validate_config(compose(["model=gpt-4o"]))


def test_saved_config_never_holds_secrets():
    text = _redacted_yaml({"model": {"api_key_env": "OPENAI_API_KEY", "api_key": "sk-live-123"},
                           "engine": {"kwargs": {"token": "hf_abc"}}})
    assert "sk-live-123" not in text and "hf_abc" not in text and "OPENAI_API_KEY" in text
