"""A large citizen assembly on a real engine, killed part-way and resumed: `python -m jobs.assembly` as a user runs it.

    python benchmarks/assembly.py [--questions 1700] [--citizens 6] [--kill-after 5000] [--json] [key=value ...]

Default: SmolLM2-135M-Instruct on the hf engine, 1,700 questions x 6 citizens x 2 orders = 20,400 prompts, each
citizen answering once per order at T=1. With `--kill-after N` the job (and its local Ray cluster) is SIGKILLed once
its response store holds N answers, then run again: the rerun must reuse every stored answer and ask only the rest.

JSON keys (a public contract): prompts, stored_at_kill, asked_after_restart, reused_after_restart,
prompts_per_second (engine throughput of the rerun), wall_s (both runs), first_run_s, resume_run_s, ties,
refusal_rate, unparseable_rate.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import print_result  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent


def _stored(store: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in store.glob("part-*.parquet")) if store.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--questions", type=int, default=1700)
    parser.add_argument("--citizens", type=int, default=6)
    parser.add_argument("--kill-after", type=int, default=5000, help="SIGKILL once the store holds this many answers")
    parser.add_argument("--results", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    results = Path(args.results or tempfile.mkdtemp(prefix="uetool-assembly-bench-"))
    command = [sys.executable, "-m", "jobs.assembly", f"model={args.model}", "outcomes=main",
               f"assembly.n_questions={args.questions}", f"assembly.citizens_per_question={args.citizens}",
               f"results_root={results}", *args.overrides]
    env = {**os.environ, "RAY_ADDRESS": ""}
    store = results / "responses" / args.model
    started = time.perf_counter()
    stored_at_kill = 0
    if args.kill_after:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None and _stored(store) < args.kill_after:
            time.sleep(2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stored_at_kill = _stored(store)
    first = time.perf_counter() - started
    resumed_at = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    resumed = time.perf_counter() - resumed_at
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-6000:])
        sys.exit(done.returncode)
    metrics = json.loads((results / "assembly" / "default" / args.model / "metrics.json").read_text())
    out = {"prompts": metrics["prompts"], "stored_at_kill": stored_at_kill,
           "asked_after_restart": metrics["asked_prompts"], "reused_after_restart": metrics["reused_prompts"],
           "prompts_per_second": metrics["prompts_per_second"], "wall_s": time.perf_counter() - started,
           "first_run_s": first, "resume_run_s": resumed, "ties": metrics["ties"],
           "refusal_rate": metrics["refusal_rate"], "unparseable_rate": metrics["unparseable_rate"],
           "results": str(results / "assembly" / "default" / args.model)}
    print_result(out, args.json)


if __name__ == "__main__":
    main()
