"""python -m jobs.store check|repair results_root=<root>

check:  list every file of the results root's response stores and checkpoints that cannot be used (truncated or
        foreign parts, damaged checkpoints) and writers' leftover temporary files; exit 1 when there is any.
repair: move those files into <root>/quarantine/<UTC time>/ (nothing is deleted), remove leftover temporary files
        of stores no job is using, and say how many answers the next run asks again. The next run of each job
        resumes from what is left.
Bad arguments exit with status 2.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "repair"):
        print("usage: python -m jobs.store check|repair results_root=<root>", file=sys.stderr)
        return 2
    root = os.environ.get("UETOOL_RESULTS", "results")
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if key != "results_root" or not sep or not value:
            print(f"jobs.store: unknown argument {arg!r}; give results_root=<root>", file=sys.stderr)
            return 2
        root = value
    from uetool.io.store_repair import repair, scan

    report = scan(root) if argv[0] == "check" else repair(root)
    print("\n".join(report.lines()))
    if argv[0] == "check":
        return 1 if report.damaged or report.temporary else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
