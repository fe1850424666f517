"""Shared output of the benchmark scripts: one JSON object (--json) or a two-column table."""

from __future__ import annotations

import json


def print_result(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out))
        return
    width = max(map(len, out)) + 2
    for key, value in out.items():
        print(f"{key:<{width}}{value:.4f}" if isinstance(value, float) else f"{key:<{width}}{value}")
