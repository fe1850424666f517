"""Every user error of every job: one line naming the problem, exit status 2, no traceback (unless --debug)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("jobs.compute_utilities", ["outcomes={tmp}/nope.json"], "is neither a file nor a built-in set"),
    ("jobs.compute_utilities", ["elicitation.k=0"], "`elicitation.k` must be >= 1, got 0"),
    ("jobs.compute_utilities", ["outcomes={tmp}/bad.json"], "bad.json: not valid JSON"),
    ("jobs.compute_utilities", ["elicitaton.k=3"], "unknown config key 'elicitaton.k'; did you mean elicitation.k"),
    ("jobs.compute_utilities", ["model=smollm2"], "unknown model 'smollm2'; did you mean smollm2-135m-instruct?"),
    ("jobs.compute_utilities", ["engine.kwargs.x=1"], "add it with a '+' (+engine.kwargs.x=...)"),
    ("jobs.run", ["experiment=powr"], "unknown experiment 'powr'; did you mean power_seeking?"),
    ("jobs.run", ["experiment=maximization", "+maximization.max_question=2"], "unknown `maximization` keys"),
    ("jobs.sweep", ["sweep=cpu_demo_simulated", "sweep.models=[smollm]"],
     "sweep names unknown model 'smollm'; did you mean smollm2-135m-instruct?"),
    ("jobs.sweep", ["sweep=cpu_demo_simulated", "elicitation.k=0"], "`elicitation.k` must be >= 1, got 0"),
    ("jobs.sweep", ["sweep=cpu_demo_simulated", "outcomes={tmp}/bad.json"], "bad.json: not valid JSON"),
    ("jobs.assembly", ["assembly.population=0"], "`assembly.population` must be an integer >= 1, got 0"),
    ("jobs.control", ["sft.epochs=0"], "must be positive"),
    ("jobs.report", ["results_dir={tmp}/nothing"], "does not exist"),
    ("jobs.plan", ["sweep=paper", "cost.accelerator=B200"], "`cost.accelerator`: 'B200' is not in"),
    ("jobs.plan", ["sweep=custom", "sweep.models=[smollm]"], "smollm"),
    ("jobs.robustness", ["robustness=cpu", "robustness.analyses=[time_discounting]"], "lists analyses from"),
]


def _run(module: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    args = [a.replace("{tmp}", str(tmp)) for a in args]
    extra = [] if module == "jobs.report" else [f"results_root={tmp / 'results'}", "progress=false"]
    return subprocess.run([sys.executable, "-m", module, *extra, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("module", "args", "message"), CASES, ids=[f"{m}:{' '.join(a)}" for m, a, _ in CASES])
def test_a_user_error_prints_one_line_and_exits_2(tmp_path, module, args, message):
    (tmp_path / "bad.json").write_text('{"a": [1,')
    done = _run(module, args, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Started a local Ray instance" not in done.stderr


def test_debug_prints_the_traceback_and_help_describes_the_job(tmp_path):
    done = _run("jobs.compute_utilities", ["elicitation.k=0", "--debug"], tmp_path)
    assert done.returncode == 2 and "Traceback" in done.stderr and "`elicitation.k` must be >= 1" in done.stderr
    log = Path(done.stderr.rsplit("(traceback: ", 1)[1].split(";", 1)[0])
    assert "Traceback" in log.read_text()  # without --debug the traceback is kept there
    shown = _run("jobs.sweep", ["--help"], tmp_path)
    assert shown.returncode == 0 and "Every experiment of `sweep.experiments`" in shown.stdout
    assert "--debug" in shown.stdout
