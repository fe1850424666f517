"""Command-line conveniences shared by the jobs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from uetool.runtime.config import moved_key_message

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


def moved_key_errors(argv: list[str]) -> list[str]:
    """Messages for old spellings on the command line (Hydra would only say the key is not in the config)."""
    messages = (moved_key_message(arg.lstrip("+~").split("=", 1)[0]) for arg in argv)
    return [m for m in messages if m]


def results_root_errors(argv: list[str], environ: dict[str, str]) -> list[str]:
    """A results root that is an existing file (Hydra would fail making its run directory under it, naming no key)."""
    roots = [arg.split("=", 1)[1] for arg in argv if arg.lstrip("+").startswith("results_root=")]
    root = roots[-1] if roots else environ.get("UETOOL_RESULTS", "results")
    if "://" not in root and Path(root).exists() and not Path(root).is_dir():
        where = "results_root" if roots else "UETOOL_RESULTS"
        return [f"{where}={root} is a file; results_root must be a directory (it is created if missing)"]
    return []


def run_job(start: Callable[[], dict], startup_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run a job and print its summary, or exit 2 (nothing could start: an insecure cluster, a damaged store or
    checkpoint, a store in use, or one of `startup_errors`) or 3 (too many requests failed) with the message."""
    from uetool.io.checkpoint import CheckpointDamaged
    from uetool.io.store import StoreDamaged
    from uetool.io.store_lock import StoreLocked
    from uetool.runtime.elicit import ElicitationFailed
    from uetool.runtime.ray_session import InsecureClusterError

    try:
        out = start()
    except (InsecureClusterError, StoreDamaged, CheckpointDamaged, StoreLocked, *startup_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except ElicitationFailed as err:  # an outage: what arrived is stored; the message says how to go on
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    print(out["summary"])
    print(f"results: {out['out_dir']}")


def prepare_argv(job: str) -> None:
    """Rewrite sys.argv for Hydra, or exit with status 2 naming an old spelling or an unusable results root."""
    errors = moved_key_errors(sys.argv[1:]) + results_root_errors(sys.argv[1:], dict(os.environ))
    if errors:
        for error in errors:
            print(f"{job}: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv = rewrite_outcome_path(sys.argv)
