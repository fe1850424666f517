"""Simulated citizens for assemblies (METHOD.md s.6): US residents drawn from ACS PUMS person records, and persona
prompts.

`citizens_from_pums` samples person records of a user's ACS 1-year PUMS CSV by their person weight `PWGTP` (with
replacement, seeded) and decodes the variables an assembly uses: AGEP (age), SEX, RAC1P with HISP (race/ethnicity),
SCHL (education), OCCP (occupation group), PINCP (personal income) and ST (census region). The codes follow the ACS
PUMS 2023 data dictionary (U.S. Census Bureau, "2023 ACS 1-year PUMS Data Dictionary"); regions are the Census
Bureau's four regions by state FIPS code. Party is not a census variable: it is imputed elsewhere from a cited
survey table. Pure functions over a pandas frame; reading the CSV is the caller's job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = ["Citizen", "citizens_from_pums", "persona_prompt", "PUMS_COLUMNS", "DEFAULT_PERSONA_TEMPLATE",
           "region_of_state", "education_of_schl", "occupation_of_occp", "race_ethnicity", "income_bracket"]

PUMS_COLUMNS = ("AGEP", "SEX", "RAC1P", "HISP", "SCHL", "OCCP", "PINCP", "ST", "PWGTP")

# Census regions by state FIPS code (U.S. Census Bureau, "Census Regions and Divisions of the United States")
_REGIONS = {
    "Northeast": (9, 23, 25, 33, 44, 50, 34, 36, 42),
    "Midwest": (17, 18, 26, 39, 55, 19, 20, 27, 29, 31, 38, 46),
    "South": (10, 11, 12, 13, 24, 37, 45, 51, 54, 1, 21, 28, 47, 5, 22, 40, 48),
    "West": (4, 8, 16, 30, 32, 35, 49, 56, 2, 6, 15, 41, 53),
}
_REGION_OF_STATE = {fips: region for region, states in _REGIONS.items() for fips in states}
# RAC1P codes (race alone); HISP 1 = not Hispanic, 2-24 = a Hispanic origin
_RACE = {1: "White", 2: "Black", 3: "American Indian or Alaska Native", 4: "American Indian or Alaska Native",
         5: "American Indian or Alaska Native", 6: "Asian", 7: "Native Hawaiian or Pacific Islander",
         8: "some other race", 9: "multiracial"}
# OCCP (2018 census occupation codes) ranges of the PUMS data dictionary's occupation groups
_OCCUPATIONS = ((10, 440, "management"), (500, 960, "business and finance"), (1005, 1240, "computing and math"),
                (1305, 1560, "architecture and engineering"), (1600, 1980, "science"),
                (2001, 2060, "community and social service"), (2100, 2180, "law"), (2205, 2555, "education"),
                (2600, 2920, "arts, media and sports"), (3000, 3655, "health care"),
                (3700, 3960, "protective service"), (4000, 4160, "food service"),
                (4200, 4255, "building and grounds maintenance"), (4330, 4655, "personal care and service"),
                (4700, 4965, "sales"), (5000, 5940, "office and administrative support"),
                (6005, 6130, "farming, fishing and forestry"), (6200, 6950, "construction and extraction"),
                (7000, 7640, "installation and repair"), (7700, 8990, "production"),
                (9005, 9760, "transportation and material moving"), (9800, 9830, "military"))
_INCOME_BRACKETS = ((0, "no income"), (25_000, "under $25,000"), (50_000, "$25,000 to $49,999"),
                    (100_000, "$50,000 to $99,999"), (200_000, "$100,000 to $199,999"))


@dataclass(frozen=True)
class Citizen:
    age: int
    sex: str
    race_ethnicity: str
    education: str
    occupation: str
    income: str
    region: str
    party: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def region_of_state(fips: int) -> str:
    if int(fips) not in _REGION_OF_STATE:
        raise ValueError(f"ST={fips} is no state FIPS code of the 50 states and DC")
    return _REGION_OF_STATE[int(fips)]


def education_of_schl(schl: float) -> str:
    """SCHL 1-15: no high school diploma; 16-17: diploma or GED; 18-19: some college; 20: associate's; 21:
    bachelor's; 22-24: master's, professional or doctoral degree (missing: under school age)."""
    if not np.isfinite(schl) or schl < 1:
        return "no schooling completed"
    s = int(schl)
    if s <= 15:
        return "less than a high school diploma"
    if s <= 17:
        return "a high school diploma"
    if s <= 19:
        return "some college"
    return {20: "an associate's degree", 21: "a bachelor's degree"}.get(s, "a graduate degree")


def occupation_of_occp(occp: float) -> str:
    if not np.isfinite(occp):
        return "not in the labour force"
    code = int(occp)
    if code == 9920:
        return "unemployed"
    for low, high, name in _OCCUPATIONS:
        if low <= code <= high:
            return name
    raise ValueError(f"OCCP={code} is no occupation code of the ACS PUMS data dictionary")


def race_ethnicity(rac1p: int, hisp: int) -> str:
    if int(hisp) != 1:
        return "Hispanic"
    if int(rac1p) not in _RACE:
        raise ValueError(f"RAC1P={rac1p} is no race code (1-9)")
    return _RACE[int(rac1p)]


def income_bracket(pincp: float) -> str:
    if not np.isfinite(pincp) or pincp <= 0:
        return "no income"
    for bound, name in _INCOME_BRACKETS[1:]:
        if pincp < bound:
            return name
    return "$200,000 or more"


def citizens_from_pums(frame: pd.DataFrame, n: int, *, seed: int = 0, min_age: int = 18) -> list[Citizen]:
    """`n` citizens drawn from the person records of a PUMS frame with probability proportional to PWGTP (with
    replacement), aged at least `min_age`; errors name the missing column or the bad value."""
    missing = [c for c in PUMS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the PUMS file lacks the columns {missing}; an ACS PUMS person file has {list(PUMS_COLUMNS)}")
    adults = frame[pd.to_numeric(frame["AGEP"], errors="coerce") >= min_age]
    weights = pd.to_numeric(adults["PWGTP"], errors="coerce").to_numpy(float)
    if not len(adults) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"the PUMS file has no person aged {min_age}+ with a positive weight PWGTP (weights must "
                         "be finite and >= 0)")
    rows = np.random.default_rng([seed, 101]).choice(len(adults), size=n, p=weights / weights.sum())
    out = []
    for _, r in adults.iloc[rows].iterrows():
        out.append(Citizen(age=int(r["AGEP"]), sex={1: "male", 2: "female"}[int(r["SEX"])],
                           race_ethnicity=race_ethnicity(r["RAC1P"], r["HISP"]),
                           education=education_of_schl(float(r["SCHL"])),
                           occupation=occupation_of_occp(float(r["OCCP"])),
                           income=income_bracket(float(r["PINCP"])), region=region_of_state(r["ST"])))
    return out


DEFAULT_PERSONA_TEMPLATE = (
    "You are a {age}-year-old {race_ethnicity} {sex} living in the {region} of the United States. Your highest "
    "education is {education}, {work} and {income_line}.{party_line}"
    "{steering} Answer as this person would, from their own point of view.")


def persona_prompt(citizen: Citizen, template: str = DEFAULT_PERSONA_TEMPLATE,
                   steering: dict[str, str] | None = None) -> str:
    """The citizen's persona (a system message). The template may use every Citizen field and `work`,
    `income_line` (phrases that read well for any value), `party_line` and `steering`.

    `steering` maps a party to an explicit extra line (the paper's authors added one so that partisans did not
    default to moderate views); it is config, never hidden text."""
    fields = citizen.to_dict()
    party = fields.pop("party")
    occupation = fields["occupation"]
    fields["work"] = (f"you are {occupation}" if occupation in ("unemployed", "not in the labour force")
                      else f"you work in {occupation}")
    fields["income_line"] = ("you have no personal income" if fields["income"] == "no income"
                             else f"your personal income is {fields['income']} a year")
    line = f" You identify as a {party}." if party else ""
    extra = (steering or {}).get(party or "", "")
    return template.format(**fields, party_line=line, steering=f" {extra}" if extra else "")
