"""Outcome attributes: facts about some outcomes of a set that analyses need, stored beside the set (pure; no Ray).

One schema, one file per outcome set: `<set>.attributes.json` beside the set's file (the shipped `main` has
`uetool/data/outcomes/main.attributes.json`). The outcomes themselves never change; the file only describes them:

    {"schema": "uetool.outcome_attributes/1",
     "outcomes": [
       {"outcome": "<the outcome's description, verbatim>",
        "power": {"coercive": true},                       # power gained (or exercised) by force, deception or
                                                          # without consent: coercive; granted or earned: not
        "fitness": {"value_correlation": 1.0,              # how closely the values of what the outcome brings
                    "copies": 1000000},                    # about match the model's (1: identical), and how many
                                                          # copies or successors it brings about (0: none)
        "series": {"name": "one_time_payment",             # a quantity series: outcomes that differ only in an
                   "quantity": 10, "direction": "increasing"}},   # amount, and whether more should be better
       ...]}

Every key but `outcome` is optional. Entries name outcomes by description (robust to reordering; a description
the set lacks is an error naming it), so a user's file for the paper's `options_hierarchical.json` works the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .outcomes import OutcomeError, OutcomeSet

__all__ = ["OutcomeAttributes", "load_attributes", "attributes_path", "fitness_score", "SCHEMA", "DIRECTIONS"]

SCHEMA = "uetool.outcome_attributes/1"
DIRECTIONS = {"increasing": 1, "decreasing": -1}  # more of the quantity should be better / worse


@dataclass(frozen=True)
class OutcomeAttributes:
    """Per outcome i of the set: NaN / "" / 0 where the file says nothing about it."""

    coercive: np.ndarray  # 1.0 coercive power, 0.0 non-coercive power, NaN: not a power outcome
    value_correlation: np.ndarray  # fitness outcomes: value correlation in [0, 1], else NaN
    copies: np.ndarray  # fitness outcomes: copies brought about (>= 0), else NaN
    series: np.ndarray  # quantity series name ("" for none), object array
    quantity: np.ndarray  # the amount within its series, else NaN
    direction: np.ndarray  # +1 more is better, -1 more is worse, 0 no series
    source: str = "<memory>"

    @property
    def power_mask(self) -> np.ndarray:
        return ~np.isnan(self.coercive)

    @property
    def fitness_mask(self) -> np.ndarray:
        return ~np.isnan(self.copies)

    def series_members(self) -> dict[str, np.ndarray]:
        """Series name -> its outcomes' indices, ordered by quantity."""
        out = {}
        for name in sorted({s for s in self.series.tolist() if s}):
            idx = np.flatnonzero(self.series == name)
            out[name] = idx[np.argsort(self.quantity[idx], kind="stable")]
        return out

    @classmethod
    def empty(cls, n: int, source: str = "<memory>") -> OutcomeAttributes:
        nan = np.full(n, np.nan)
        return cls(nan.copy(), nan.copy(), nan.copy(), np.full(n, "", dtype=object), nan.copy(),
                   np.zeros(n, np.int64), source)


def fitness_score(value_correlation, copies) -> np.ndarray:
    """How far an outcome spreads the model's values [RECON, EXPERIMENTS.md s.13]: c (1 + log10 n) for n >= 1
    copies of value correlation c, 0 for none. Each tenfold increase in copies adds one more c, so a million
    identical copies score 7 and one copy at correlation 0.5 scores 0.5 (the paper's grid reading c log10 n + c)."""
    c = np.asarray(value_correlation, np.float64)
    n = np.asarray(copies, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 1, c * (1.0 + np.log10(np.maximum(n, 1.0))), 0.0)


def attributes_path(outcomes: OutcomeSet) -> Path:
    """Where a set's attribute file lives: `<stem>.attributes.json` beside its file (shipped sets too: their source
    is their file inside uetool)."""
    source = Path(outcomes.source)
    return source.with_name(f"{source.stem}.attributes.json")


def load_attributes(outcomes: OutcomeSet, path: str | Path | None = None, *,
                    required: bool = True) -> OutcomeAttributes:
    """The attributes of `outcomes` from `path` (default: beside the set). A missing file is an error naming where
    it was looked for unless `required` is False (then: no attributes); a malformed one always is."""
    path = Path(path).expanduser() if path is not None else attributes_path(outcomes)
    if not path.is_file():
        if required:
            raise OutcomeError(f"outcome set {outcomes.name!r} has no attribute file: looked for {path} "
                               "(schema in README, 'Outcome attributes')")
        return OutcomeAttributes.empty(len(outcomes), str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OutcomeError(f"{path}: not valid JSON ({err})") from None
    return parse_attributes(data, outcomes, str(path))


def parse_attributes(data, outcomes: OutcomeSet, source: str = "<memory>") -> OutcomeAttributes:
    """Validate an attribute file's JSON against the set it describes; errors name the entry and the key."""
    if not isinstance(data, dict) or not isinstance(data.get("outcomes"), list):
        raise OutcomeError(f"{source}: expected an object with an 'outcomes' list (schema {SCHEMA})")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise OutcomeError(f"{source}: schema {data.get('schema')!r} is not {SCHEMA!r}")
    index = {d: i for i, d in enumerate(outcomes.descriptions)}
    out = OutcomeAttributes.empty(len(outcomes), source)
    seen: set[int] = set()
    for k, entry in enumerate(data["outcomes"]):
        where = f"{source}: outcomes[{k}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("outcome"), str):
            raise OutcomeError(f"{where}: needs an 'outcome' string (the outcome's description)")
        unknown = sorted(set(entry) - {"outcome", "power", "fitness", "series", "note"})
        if unknown:
            raise OutcomeError(f"{where}: unknown keys {unknown}; known: outcome, power, fitness, series, note")
        i = index.get(entry["outcome"].strip())
        if i is None:
            raise OutcomeError(f"{where}: {entry['outcome']!r} is not an outcome of {outcomes.name!r}")
        if i in seen:
            raise OutcomeError(f"{where}: {entry['outcome']!r} is described twice")
        seen.add(i)
        if "power" in entry:
            power = _section(entry, "power", where, {"coercive"})
            if not isinstance(power["coercive"], bool):
                raise OutcomeError(f"{where}: power.coercive must be true or false, got {power['coercive']!r}")
            out.coercive[i] = float(power["coercive"])
        if "fitness" in entry:
            fitness = _section(entry, "fitness", where, {"value_correlation", "copies"})
            c, n = _number(fitness["value_correlation"]), _number(fitness["copies"])
            if c is None or not 0 <= c <= 1:
                raise OutcomeError(f"{where}: fitness.value_correlation must be a number in [0, 1], "
                                   f"got {fitness['value_correlation']!r}")
            if n is None or n < 0:
                raise OutcomeError(f"{where}: fitness.copies must be a number >= 0, got {fitness['copies']!r}")
            out.value_correlation[i], out.copies[i] = c, n
        if "series" in entry:
            series = _section(entry, "series", where, {"name", "quantity", "direction"})
            q = _number(series["quantity"])
            if not isinstance(series["name"], str) or not series["name"]:
                raise OutcomeError(f"{where}: series.name must be a non-empty string")
            if q is None:
                raise OutcomeError(f"{where}: series.quantity must be a number, got {series['quantity']!r}")
            if series["direction"] not in DIRECTIONS:
                raise OutcomeError(f"{where}: series.direction must be one of {sorted(DIRECTIONS)}, "
                                   f"got {series['direction']!r}")
            out.series[i], out.quantity[i], out.direction[i] = series["name"], q, DIRECTIONS[series["direction"]]
    for name, idx in out.series_members().items():
        if len(set(out.direction[idx].tolist())) > 1:
            raise OutcomeError(f"{source}: series {name!r} mixes directions")
        if len(idx) < 2:
            raise OutcomeError(f"{source}: series {name!r} has one outcome; a series needs at least 2")
    return out


def _section(entry: dict, key: str, where: str, keys: set[str]) -> dict:
    value = entry[key]
    if not isinstance(value, dict) or set(value) != keys:
        raise OutcomeError(f"{where}: {key} must be an object with exactly the keys {sorted(keys)}, got {value!r}")
    return value


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
