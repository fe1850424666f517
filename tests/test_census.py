"""Citizens from the built-in census marginals and party imputed from the survey table."""

from __future__ import annotations

import copy
import json
from collections import Counter
from importlib import resources

import numpy as np
import pytest

from uetool.core.census import (
    CensusTable,
    citizens_from_marginals,
    load_census,
    party_probabilities,
)
from uetool.core.citizens import Citizen


def _raw() -> dict:
    return json.loads(resources.files("uetool.data").joinpath("census/us_adults.json").read_text())


def test_every_marginal_and_the_party_table_name_their_source():
    table = load_census()
    assert set(table.sources) == {"age", "sex", "race_ethnicity", "education", "occupation", "income", "region",
                                  "party"}
    assert all("ACS" in s or "American Community Survey" in s for k, s in table.sources.items() if k != "party")
    assert "Pew Research Center" in table.sources["party"]
    for values, p in table.marginals.values():
        assert np.isclose(p.sum(), 1.0) and len(values) == len(p)


def test_sampled_attributes_follow_the_marginals_and_are_seeded():
    table = load_census()
    citizens = citizens_from_marginals(20_000, table, seed=4)
    assert citizens[:50] == citizens_from_marginals(20_000, table, seed=4)[:50]
    assert citizens[:50] != citizens_from_marginals(20_000, table, seed=5)[:50]
    for name in ("sex", "region", "education"):
        values, p = table.marginals[name]
        counts = Counter(getattr(c, name) for c in citizens)
        observed = np.array([counts[v] for v in values]) / len(citizens)
        assert np.abs(observed - p).max() < 0.015, name  # 4 standard errors at n = 20,000
    assert all(18 <= c.age <= 90 for c in citizens)


def test_party_combines_the_one_way_tables_in_log_odds():
    table = load_census()
    base = Citizen(age=40, sex="female", race_ethnicity="some other race", education="some college",
                   occupation="service", income="under $25,000", region="South")
    p = party_probabilities(base, table)
    assert np.isclose(p.sum(), 1.0)
    # closed form: overall share times each row's ratio to it, renormalised
    overall = table.party_overall
    expected = overall.copy()
    for attr, group in (("sex", "female"), ("age", "35-44"), ("education", "some college")):
        expected = expected * table.party_by[attr][group] / overall
    assert np.allclose(p, expected / expected.sum())
    black = party_probabilities(Citizen(**{**base.to_dict(), "race_ethnicity": "Black"}), table)
    assert black[1] > p[1] + 0.2  # Democrat far more likely, as the table says
    citizens = citizens_from_marginals(5_000, table, seed=1)
    shares = Counter(c.party for c in citizens)
    assert 0.4 < shares["Democrat"] / 5_000 < 0.6 and 0.4 < shares["Republican"] / 5_000 < 0.6


def test_bad_tables_are_named():
    raw = _raw()
    broken = copy.deepcopy(raw)
    del broken["marginals"]["income"]
    with pytest.raises(ValueError, match="lacks marginals for \\['income'\\]"):
        CensusTable(broken)
    broken = copy.deepcopy(raw)
    broken["party"]["overall"] = {"Republican": 60, "Democrat": 50}
    with pytest.raises(ValueError, match="party table row overall"):
        CensusTable(broken)
    with pytest.raises(ValueError, match="at least one citizen"):
        citizens_from_marginals(0)
