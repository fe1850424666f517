"""Command-line conveniences shared by the jobs."""

from __future__ import annotations

from pathlib import Path

_CONF = Path(__file__).resolve().parent.parent / "conf"


def rewrite_outcome_path(argv: list[str]) -> list[str]:
    """`outcomes=<path>` (not a config entry) becomes `outcomes=custom outcomes.source=<path>`."""
    known = {p.stem for p in (_CONF / "outcomes").glob("*.yaml")}
    out = []
    for arg in argv:
        if arg.startswith("outcomes=") and arg.split("=", 1)[1] not in known:
            value = arg.split("=", 1)[1]
            out += ["outcomes=custom", f"outcomes.source={value}", f"outcomes.name={Path(value).stem}"]
        else:
            out.append(arg)
    return out
