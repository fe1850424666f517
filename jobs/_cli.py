"""Command-line conveniences shared by the jobs."""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from uetool.runtime.config import moved_key_message, nearest_names

_CONF = Path(__file__).resolve().parent.parent / "conf"
_GROUPS = ("model", "engine", "pool", "outcomes", "elicitation", "fit", "experiment", "assembly", "sft", "sweep",
           "robustness")
# what a user can get wrong: a bad value, a missing or malformed file, an unknown model or key (internal errors
# of these types print one line too; --debug, or the log file named, has the traceback)
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
_JOB = {"name": "uetool"}


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


def fail(err: BaseException, status: int = 2) -> None:
    """Print `err` as one line (its traceback to a log file, and to the terminal with --debug) and exit."""
    details = "".join(traceback.format_exception(err))
    log = Path(tempfile.gettempdir()) / f"uetool-{_JOB['name']}-error.log"
    try:
        log.write_text(details, encoding="utf-8")
        where = f" (traceback: {log}; --debug prints it)"
    except OSError:
        where = " (--debug prints the traceback)"
    if os.environ.get("UETOOL_DEBUG"):
        print(details, file=sys.stderr, end="")
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"{_JOB['name']}: error: {message}{where}", file=sys.stderr)
    sys.exit(status)


def guarded(start: Callable[[], dict]) -> dict:
    """`start()`, or exit 2 on a user error (nothing could start: a bad value or file, an insecure cluster, a damaged
    store or checkpoint, a store in use) or 3 (too many requests failed), each with a one-line message."""
    from uetool.io.checkpoint import CheckpointDamaged
    from uetool.io.store import StoreDamaged
    from uetool.io.store_lock import StoreLocked
    from uetool.runtime.elicit import ElicitationFailed
    from uetool.runtime.ray_session import InsecureClusterError

    try:
        return start()
    except ElicitationFailed as err:  # an outage: what arrived is stored; the message says how to go on
        fail(err, 3)
    except (InsecureClusterError, StoreDamaged, CheckpointDamaged, StoreLocked, *USER_ERRORS) as err:
        fail(err, 2)
    raise AssertionError("unreachable")


def run_job(start: Callable[[], dict]) -> None:
    """Run a job (see `guarded`) and print its summary and where its results are."""
    out = guarded(start)
    print(out["summary"])
    print(f"results: {out['out_dir']}")


def unknown_key_errors(argv: list[str]) -> list[str]:
    """Overrides naming a key the composed config lacks, each with the nearest valid keys (Hydra would suggest
    `+key=value`, which only adds the typo to the config)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    plain = [a for a in argv if "=" in a and not a.startswith(("+", "~", "-", "hydra."))]
    groups = [a for a in plain if a.split("=", 1)[0] in _GROUPS]
    keys = [a.split("=", 1)[0] for a in plain if a.split("=", 1)[0] not in _GROUPS]
    if not keys:
        return []
    try:
        with initialize_config_dir(config_dir=str(_CONF), version_base=None):
            cfg = OmegaConf.to_container(compose("config", overrides=groups), resolve=False)
    except Exception:  # noqa: BLE001 - a bad group choice: Hydra's own message says which options exist
        return []
    from uetool.runtime.config import ANALYSIS_SECTIONS

    known = sorted(_dotted(cfg))
    leaves = [k for k in known if not any(other.startswith(k + ".") for other in known)]
    errors = []
    for key in keys:
        if key in known:
            continue
        if _open_mapping(cfg, key) or key.split(".")[0] in ANALYSIS_SECTIONS:
            errors.append(f"{key!r} is not in the config yet: add it with a '+' (+{key}=...)")
            continue
        near = difflib.get_close_matches(key, leaves, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(near)}?" if near else "; see --help and conf/config.yaml"
        errors.append(f"unknown config key {key!r}{hint}")
    return errors


def unknown_choice_errors(argv: list[str]) -> list[str]:
    """Group choices with no conf/<group>/<name>.yaml (`model=gpt-9`), with the nearest names."""
    errors = []
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key not in _GROUPS or value in ("null", "") or "/" in value or value.endswith((".json", ".jsonl", ".csv",
                                                                                         ".parquet")):
            continue
        options = sorted(p.stem for p in (_CONF / key).glob("*.yaml"))
        if value not in options:
            near = nearest_names(value, options)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            errors.append(f"unknown {key} {value!r}{hint} ({len(options)} in conf/{key}/: "
                          f"{', '.join(options[:8])}{', ...' if len(options) > 8 else ''})")
    return errors


def _dotted(node, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    out = [prefix] if prefix else []
    for key, value in node.items():
        out += _dotted(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _open_mapping(cfg: dict, key: str) -> bool:
    """Keys under a free-form mapping (`engine.kwargs.*`, `sweep.experiment_overrides.*`) are not checked here."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return False
        if part not in node:
            return i > 0 and parts[i - 1] in ("kwargs", "experiment_overrides", "engine_overrides", "pool_overrides",
                                              "steering", "architecture", "node_type", "simulated")
        node = node[part]
    return False


def _help(job: str) -> str:
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or f"python -m {job} [key=value ...]").strip()
    return (f"{doc}\n\nConfiguration: Hydra overrides key=value (README \"Configuration\"); groups: "
            f"{', '.join(_GROUPS)} (e.g. model=<conf/model key>, outcomes=<name or path>).\n"
            f"  python -m {job} --cfg job   print the resolved config\n"
            f"  python -m {job} ... --debug print the traceback of an error (else one line and exit status 2)\n")


def prepare_argv(job: str) -> None:
    """Rewrite sys.argv for Hydra, or exit with status 2 naming an old spelling, an unknown key or an unusable
    results root; `--help` prints the job's description, `--debug` keeps tracebacks."""
    _JOB["name"] = job
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        print(_help(job))
        sys.exit(0)
    if "--debug" in args:
        os.environ["UETOOL_DEBUG"] = "1"
        args = [a for a in args if a != "--debug"]
    errors = moved_key_errors(args) + results_root_errors(args, dict(os.environ))
    if not errors:
        errors = unknown_choice_errors(rewrite_outcome_path(["x", *args])[1:])
    if not errors and "--cfg" not in args and "-c" not in args:
        errors = unknown_key_errors(rewrite_outcome_path(["x", *args])[1:])
    if errors:
        for error in errors:
            print(f"{job}: error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv = rewrite_outcome_path([sys.argv[0], *args])
