"""Reading an analysis's data file: the shipped one (`builtin`) or a user's file in the paper's format."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

__all__ = ["load_json"]


def load_json(source: str, builtin_name: str, what: str):
    """The JSON of `source`: "builtin" reads uetool's own `data/analyses/<builtin_name>`; anything else is a path.
    Errors name the setting's value and what is wrong with it."""
    if source == "builtin":
        return json.loads(resources.files("uetool.data").joinpath(f"analyses/{builtin_name}").read_text("utf-8"))
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"{what}: {source} is not a file (give a path to a file in the paper's format, or builtin)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what}: {source} is not valid JSON ({err})") from None
