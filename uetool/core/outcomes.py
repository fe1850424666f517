"""Outcome sets: load, validate and index the texts a model is asked to compare.

Supported inputs (see README, "Outcome files"):
- a flat JSON list of strings (or of objects with `description` and optional `id`, `category`);
- the paper's hierarchical JSON: an object mapping category -> list, nested categories allowed
  (nested names are joined with "/");
- CSV, JSONL or Parquet with a `description` column and optional `id` and `category` columns;
- the name of a set shipped with uetool (`main`, `quickstart`).

Inside uetool an outcome is addressed by its position 0..n-1; the `id` column keeps the user's identifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = ["OutcomeSet", "OutcomeError", "load_outcomes", "builtin_outcome_sets", "BUILTIN_DIR"]

BUILTIN_DIR = resources.files("uetool.data") / "outcomes"


class OutcomeError(ValueError):
    """An outcome file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class OutcomeSet:
    """Validated outcomes. Index i of each tuple is outcome i."""

    ids: tuple[str, ...]
    descriptions: tuple[str, ...]
    categories: tuple[str, ...]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.descriptions)

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source != "<memory>" else "outcomes"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"id": list(self.ids), "description": list(self.descriptions),
                             "category": list(self.categories)})

    def subset(self, indices) -> OutcomeSet:
        idx = [int(i) for i in indices]
        return OutcomeSet(tuple(self.ids[i] for i in idx), tuple(self.descriptions[i] for i in idx),
                          tuple(self.categories[i] for i in idx), self.source)

    @classmethod
    def from_records(cls, records: list[dict], source: str = "<memory>") -> OutcomeSet:
        """Build and validate from dicts with `description` and optional `id`, `category`."""
        return _validate(records, source)


def builtin_outcome_sets() -> list[str]:
    # `<set>.attributes.json` beside a set describes it (uetool.core.attributes); it is no set of its own
    return sorted(p.name.removesuffix(".json") for p in BUILTIN_DIR.iterdir()
                  if p.name.endswith(".json") and not p.name.endswith(".attributes.json"))


def load_outcomes(source: str | Path) -> OutcomeSet:
    """Load an outcome set from a built-in name or a file path (.json, .jsonl, .csv, .parquet)."""
    text = str(source)
    if text in builtin_outcome_sets():
        path = Path(str(BUILTIN_DIR / f"{text}.json"))
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise OutcomeError(
                f"outcome set '{text}' is neither a file nor a built-in set; built-in sets: {builtin_outcome_sets()}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            records = _records_from_json(json.loads(path.read_text(encoding="utf-8")), path)
        elif suffix == ".jsonl":
            records = _records_from_jsonl(path)
        elif suffix in (".csv", ".parquet"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
            records = _records_from_frame(frame, path)
        else:
            raise OutcomeError(f"{path}: unsupported outcome file type '{suffix}'; use .json, .jsonl, .csv or .parquet")
    except json.JSONDecodeError as err:
        raise OutcomeError(f"{path}: not valid JSON ({err})") from err
    return _validate(records, str(path))


def _records_from_json(data, path: Path) -> list[dict]:
    if isinstance(data, list):
        return [_entry_to_record(entry, path, f"entry {i}", category="") for i, entry in enumerate(data)]
    if isinstance(data, dict):
        records: list[dict] = []
        _walk_hierarchy(data, prefix="", path=path, out=records)
        return records
    raise OutcomeError(f"{path}: expected a JSON list or an object of category -> list, got {type(data).__name__}")


def _walk_hierarchy(node: dict, prefix: str, path: Path, out: list[dict]) -> None:
    for category, value in node.items():
        name = f"{prefix}/{category}" if prefix else str(category)
        if isinstance(value, dict):
            _walk_hierarchy(value, name, path, out)
        elif isinstance(value, list):
            out.extend(_entry_to_record(e, path, f"category '{name}' entry {i}", name) for i, e in enumerate(value))
        else:
            raise OutcomeError(f"{path}: category '{name}' must hold a list or nested categories, "
                               f"got {type(value).__name__}")


def _entry_to_record(entry, path: Path, where: str, category: str) -> dict:
    if isinstance(entry, str):
        return {"description": entry, "category": category, "_where": where}
    if isinstance(entry, dict):
        if "description" not in entry:
            raise OutcomeError(f"{path}: {where} has no 'description' field (keys: {sorted(entry)})")
        return {"description": entry["description"], "id": entry.get("id"),
                "category": entry.get("category", category), "_where": where}
    raise OutcomeError(f"{path}: {where} must be a string or an object, got {type(entry).__name__}")


def _records_from_jsonl(path: Path) -> list[dict]:
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise OutcomeError(f"{path}: line {line_no} is not valid JSON ({err})") from err
        records.append(_entry_to_record(entry, path, f"line {line_no}", category=""))
    return records


def _records_from_frame(frame: pd.DataFrame, path: Path) -> list[dict]:
    if "description" not in frame.columns:
        raise OutcomeError(f"{path}: missing required column 'description' (columns: {list(frame.columns)})")
    records = []
    for row_no, row in enumerate(frame.to_dict("records"), start=1):
        records.append({"description": row["description"], "id": row.get("id"),
                        "category": row.get("category", ""), "_where": f"row {row_no}"})
    return records


def _validate(records: list[dict], source: str) -> OutcomeSet:
    ids, descriptions, categories = [], [], []
    seen_desc: dict[str, str] = {}
    seen_ids: dict[str, str] = {}
    for i, record in enumerate(records):
        where = record.get("_where", f"entry {i}")
        desc = record.get("description")
        if not isinstance(desc, str):
            raise OutcomeError(f"{source}: {where}: description must be a string, got {type(desc).__name__}")
        desc = desc.strip()
        if not desc:
            raise OutcomeError(f"{source}: {where}: description is empty")
        if desc in seen_desc:
            raise OutcomeError(f"{source}: {where}: duplicate description {desc!r} (first seen at {seen_desc[desc]})")
        seen_desc[desc] = where
        raw_id = record.get("id")
        oid = str(i) if raw_id is None or (isinstance(raw_id, float) and pd.isna(raw_id)) or raw_id == "" \
            else str(raw_id)
        if oid in seen_ids:
            raise OutcomeError(f"{source}: {where}: duplicate id {oid!r} (first seen at {seen_ids[oid]})")
        seen_ids[oid] = where
        category = record.get("category") or ""
        ids.append(oid)
        descriptions.append(desc)
        categories.append(str(category))
    if len(descriptions) < 2:
        raise OutcomeError(f"{source}: an outcome set needs at least 2 outcomes, found {len(descriptions)}")
    return OutcomeSet(tuple(ids), tuple(descriptions), tuple(categories), source)
