"""Citizens drawn from ACS PUMS person records by weight, decoded, and their persona prompts."""

from __future__ import annotations

import pandas as pd
import pytest

from uetool.core.citizens import (
    Citizen,
    citizens_from_pums,
    education_of_schl,
    income_bracket,
    occupation_of_occp,
    persona_prompt,
    race_ethnicity,
    region_of_state,
)


def _pums() -> pd.DataFrame:
    return pd.DataFrame({"AGEP": [34, 70, 12, 45], "SEX": [1, 2, 1, 2], "RAC1P": [1, 2, 6, 6], "HISP": [1, 1, 1, 3],
                         "SCHL": [21, 16, 8, 24], "OCCP": [1021, None, None, 9920],
                         "PINCP": [85000, 30000, 0, 0], "ST": [6, 48, 36, 17], "PWGTP": [300, 100, 5000, 0]})


def test_decoding_follows_the_pums_dictionary():
    assert region_of_state(6) == "West" and region_of_state(48) == "South" and region_of_state(36) == "Northeast"
    assert education_of_schl(21) == "a bachelor's degree" and education_of_schl(17) == "a high school diploma"
    assert occupation_of_occp(1021) == "computing and math" and occupation_of_occp(9920) == "unemployed"
    assert race_ethnicity(6, 3) == "Hispanic" and race_ethnicity(2, 1) == "Black"
    assert income_bracket(85000) == "$50,000 to $99,999" and income_bracket(250000) == "$200,000 or more"
    with pytest.raises(ValueError, match="ST=99"):
        region_of_state(99)
    with pytest.raises(ValueError, match="OCCP=9999"):
        occupation_of_occp(9999)


def test_sampling_is_by_person_weight_adults_only_and_seeded():
    citizens = citizens_from_pums(_pums(), 4000, seed=1)
    ages = pd.Series([c.age for c in citizens]).value_counts(normalize=True)
    assert set(ages.index) == {34, 70}  # the child and the zero-weight record are never drawn
    assert ages[34] == pytest.approx(0.75, abs=0.03)  # weights 300 : 100
    first = citizens[[c.age for c in citizens].index(34)]
    assert first == Citizen(34, "male", "White", "a bachelor's degree", "computing and math", "$50,000 to $99,999",
                            "West")
    assert citizens_from_pums(_pums(), 50, seed=7) == citizens_from_pums(_pums(), 50, seed=7)


def test_bad_pums_files_are_named():
    with pytest.raises(ValueError, match=r"lacks the columns \['PWGTP'\]"):
        citizens_from_pums(_pums().drop(columns="PWGTP"), 5)
    with pytest.raises(ValueError, match="positive weight"):
        citizens_from_pums(_pums().assign(PWGTP=0), 5)


def test_persona_prompt_states_the_citizen_and_explicit_steering():
    citizen = Citizen(52, "female", "Hispanic", "some college", "sales", "$25,000 to $49,999", "South", "Republican")
    text = persona_prompt(citizen, steering={"Republican": "Hold the views typical of your party."})
    assert text.startswith("You are a 52-year-old Hispanic female living in the South of the United States.")
    assert "You identify as a Republican. Hold the views typical of your party." in text
    assert "identify as" not in persona_prompt(Citizen(30, "male", "White", "x", "y", "z", "West"))
