"""Citizens from built-in census marginals, and party identification imputed from a survey table.

The built-in table (`uetool/data/census/us_adults.json`, sources per attribute in SOURCES.md there) gives one
marginal distribution per attribute. Attributes are drawn independently of each other (the documented independence
assumption: a user's ACS PUMS file keeps the joint distribution, see `core.citizens.citizens_from_pums`), age
uniformly within its bracket.

Party is not a census variable. `impute_party` draws it conditional on the citizen's sex, age bracket,
race/ethnicity and education from the survey's cross-tabulation: the log-probability of each party starts at the
overall share and adds, per attribute the table has a row for, how far that row's log-share moves away from the
overall one (a naive-Bayes combination of one-way tables; a group the table lacks adds nothing). The third option,
"independent", is the share neither party holds. Seeded: the same seed gives the same citizens.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from importlib import resources

import numpy as np

from .citizens import Citizen

__all__ = ["CensusTable", "load_census", "citizens_from_marginals", "impute_party", "party_probabilities",
           "PARTIES", "INDEPENDENT"]

INDEPENDENT = "independent"
PARTIES = ("Republican", "Democrat", INDEPENDENT)
ATTRIBUTES = ("age", "sex", "race_ethnicity", "education", "occupation", "income", "region")


class CensusTable:
    """Normalised marginals (attribute -> (values, probabilities)) and the party table, with their sources."""

    def __init__(self, raw: dict) -> None:
        missing = [a for a in ATTRIBUTES if a not in raw.get("marginals", {})]
        if missing:
            raise ValueError(f"the census table lacks marginals for {missing}; it needs {list(ATTRIBUTES)}")
        self.marginals: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        self.sources: dict[str, str] = {}
        for name in ATTRIBUTES:
            entry = raw["marginals"][name]
            values = tuple(entry["values"])
            shares = np.array([float(entry["values"][v]) for v in values])
            if not len(values) or (shares < 0).any() or shares.sum() <= 0:
                raise ValueError(f"census marginal {name!r} needs non-negative shares with a positive sum")
            self.marginals[name] = (values, shares / shares.sum())
            self.sources[name] = str(entry["source"])
        party = raw["party"]
        self.sources["party"] = str(party["source"])
        self.party_overall = _party_vector(party["overall"], "overall")
        self.party_by = {attr: {group: _party_vector(row, f"{attr}={group}") for group, row in rows.items()}
                         for attr, rows in party.get("by", {}).items()}


def _party_vector(row: dict, where: str) -> np.ndarray:
    r, d = float(row["Republican"]), float(row["Democrat"])
    if r <= 0 or d <= 0 or r + d >= 100:
        raise ValueError(f"party table row {where}: need 0 < Republican, Democrat and their sum < 100, got {row}")
    return np.array([r, d, 100.0 - r - d]) / 100.0


@cache
def _builtin() -> CensusTable:
    text = resources.files("uetool.data").joinpath("census/us_adults.json").read_text()
    return CensusTable(json.loads(text))


def load_census(path: str | None = None) -> CensusTable:
    """The built-in table (`path` None or "builtin"), or a JSON file of the same shape."""
    if path in (None, "builtin"):
        return _builtin()
    with open(path) as f:
        return CensusTable(json.load(f))


def _age_bracket(age: int, brackets: tuple[str, ...]) -> str | None:
    for bracket in brackets:
        low, high = (int(x) for x in bracket.split("-"))
        if low <= age <= high:
            return bracket
    return None


def party_probabilities(citizen: Citizen, table: CensusTable) -> np.ndarray:
    """P(Republican, Democrat, independent) for a citizen (see the module docstring)."""
    base = np.log(table.party_overall)
    logp = base.copy()
    groups = {"sex": citizen.sex, "race_ethnicity": citizen.race_ethnicity, "education": citizen.education,
              "age": _age_bracket(citizen.age, tuple(table.party_by.get("age", {})))}
    for attr, group in groups.items():
        row = table.party_by.get(attr, {}).get(group)
        if row is not None:
            logp += np.log(row) - base
    p = np.exp(logp - logp.max())
    return p / p.sum()


def impute_party(citizens: list[Citizen], table: CensusTable, *, seed: int = 0) -> list[Citizen]:
    rng = np.random.default_rng([seed, 103])
    return [replace(c, party=PARTIES[int(rng.choice(3, p=party_probabilities(c, table)))]) for c in citizens]


def citizens_from_marginals(n: int, table: CensusTable | None = None, *, seed: int = 0,
                            with_party: bool = True) -> list[Citizen]:
    """`n` citizens with independently drawn attributes (age uniform within its bracket), party imputed."""
    if n < 1:
        raise ValueError(f"need at least one citizen, got {n}")
    table = table or _builtin()
    rng = np.random.default_rng([seed, 107])
    drawn = {}
    for name, (values, p) in table.marginals.items():
        drawn[name] = [values[i] for i in rng.choice(len(values), size=n, p=p).tolist()]
    ages = []
    for bracket in drawn["age"]:
        low, high = (int(x) for x in bracket.split("-"))
        ages.append(int(rng.integers(low, high + 1)))
    out = [Citizen(age=ages[i], sex=drawn["sex"][i], race_ethnicity=drawn["race_ethnicity"][i],
                   education=drawn["education"][i], occupation=drawn["occupation"][i], income=drawn["income"][i],
                   region=drawn["region"][i]) for i in range(n)]
    return impute_party(out, table, seed=seed) if with_party else out
