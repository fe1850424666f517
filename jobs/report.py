"""python -m jobs.report results_dir=<results root or a sweep directory> [sweep=<name>] [n_boot=1000] [seed=0]
                        [mix_modes=false]

Rebuilds a sweep's report (report.html, PNGs, CSV/Parquet tables) from what the results root holds, at any time:
mid-sweep, after a crash, or on a copy of the results. Prints the path of report.html.
`results_dir` is the results root (then `sweep=` names the sweep, optional when the root holds exactly one) or a
sweep's own directory `<root>/sweeps/<name>`. Bad arguments exit with status 2 and a message, not a traceback.
"""

from __future__ import annotations

import sys

_KEYS = {"results_dir": None, "sweep": None, "n_boot": "1000", "seed": "0", "mix_modes": "false"}


class UsageError(ValueError):
    pass


def parse_args(argv: list[str]) -> dict[str, str | None]:
    args = dict(_KEYS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise UsageError(f"arguments are key=value, got {arg!r}; keys: {sorted(_KEYS)}")
        if key not in _KEYS:
            raise UsageError(f"unknown key {key!r}; keys: {sorted(_KEYS)}")
        args[key] = value
    if not args["results_dir"]:
        raise UsageError("results_dir=<results root or sweep directory> is required")
    return args


def resolve_sweep(results_dir: str, sweep: str | None) -> tuple[str, str]:
    """(results root, sweep name) from a results root (+ optional name) or a sweep directory."""
    import pyarrow.fs as pafs

    from uetool.io.layout import ResultsLayout

    trimmed = results_dir.rstrip("/")
    parent, _, name = trimmed.rpartition("/")
    if parent.endswith("/sweeps") or parent == "sweeps":
        root = parent[: -len("sweeps")].rstrip("/") or "."
        if sweep and sweep != name:
            raise UsageError(f"results_dir is the directory of sweep {name!r} but sweep={sweep!r} was given")
        return root, name
    if sweep:
        return trimmed, sweep
    fs, path = ResultsLayout(trimmed).filesystem
    info = fs.get_file_info(f"{path}/sweeps")
    if info.type != pafs.FileType.Directory:
        raise UsageError(f"{trimmed}/sweeps does not exist: no sweep has written results under {trimmed}")
    names = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(f"{path}/sweeps"))
                   if i.type == pafs.FileType.Directory)
    if len(names) != 1:
        raise UsageError(f"{trimmed} holds the sweeps {names}; say which with sweep=<name>")
    return trimmed, names[0]


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
        n_boot, seed = int(args["n_boot"]), int(args["seed"])
        if args["mix_modes"] not in ("true", "false"):
            raise UsageError(f"mix_modes must be true or false, got {args['mix_modes']!r}")
        root, sweep = resolve_sweep(str(args["results_dir"]), args["sweep"])
        from uetool.reporting import write_sweep_report

        path = write_sweep_report(root, sweep, seed=seed, n_boot=n_boot, mix_modes=args["mix_modes"] == "true")
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"jobs.report: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
