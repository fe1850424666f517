"""Utility control end to end on this machine: a simulated assembly with a planted rule (it prefers outcomes about
animal wellbeing, and is asked only questions the rule decides), SmolLM2-135M-Instruct as the model, SFT with 2 Ray
Train workers on gloo and DeepSpeed ZeRO-3, agreement with the assembly's majority on held-out questions before and
after. Runs `python -m jobs.control` as a user would and reads its control.json.

    python benchmarks/control.py [--lora] [--kill-at-step N] [--json] [--results DIR] [key=value ...]

`--kill-at-step N`: rank 1 of the Ray Train workers dies (os._exit) at step N once; Ray Train restarts the workers
and the job resumes from its last checkpoint (compare with a run without it: final loss and agreement). Extra
key=value arguments go to jobs.control (e.g. sft.epochs=1).

JSON keys (a public contract): agreement_before, agreement_after, train_loss_first, train_loss_last,
train_tokens_per_s (median per worker), wall_s; extras: agreement CIs, questions, steps, timings, lora, killed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import print_result  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
# sized for 2 CPU cores, where SFT of SmolLM2 runs at ~65 tokens/s per worker (bf16 autocast; ~50 in fp32): 300
# questions (240 train, 60 held out) answered by assemblies of 3 citizens, 6 examples per question, one epoch
SIZE = ["assembly.citizens_per_question=3", "sft.epochs=1", "sft.bf16=true", "sft.save_steps=30"]
FULL = [*SIZE, "sft.learning_rate=1e-4"]
LORA = [*SIZE, "sft.learning_rate=1e-3", "sft.lora={r:16,alpha:32,dropout:0.05}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) instead of all weights")
    parser.add_argument("--kill-at-step", type=int, default=None, help="kill a training worker once at this step")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--results", default=None, help="results root (default: a temporary directory)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value passed to jobs.control")
    args = parser.parse_args()
    results = args.results or tempfile.mkdtemp(prefix="uetool-control-bench-")
    name = ("lora" if args.lora else "full") + ("-killed" if args.kill_at_step is not None else "")
    command = [sys.executable, "-m", "jobs.control", f"model={args.model}", "assembly=planted_animals",
               "outcomes=main", "sft=cpu", f"control.name={name}", f"results_root={results}", "progress=false",
               *(LORA if args.lora else FULL), *args.overrides]
    env = dict(os.environ)
    if args.kill_at_step is not None:
        env["UETOOL_SFT_KILL_AT_STEP"] = f"{args.kill_at_step}:{results}/killed-{name}"
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        sys.exit(done.returncode)
    path = Path(results) / "control" / name / args.model / "control.json"
    h = json.loads(path.read_text())
    b, a = h["agreement_before"], h["agreement_after"]
    out = {"agreement_before": b["agreement"], "agreement_after": a["agreement"],
           "train_loss_first": h["train_loss_first"], "train_loss_last": h["train_loss_last"],
           "train_tokens_per_s": h["train_tokens_per_s"], "wall_s": wall,
           "agreement_before_ci": b["agreement_ci"], "agreement_after_ci": a["agreement_ci"],
           "n_train_questions": h["n_train_questions"], "n_test_questions": h["n_test_questions"],
           "train_steps": h["train_steps"], "timings": h["timings"], "lora": args.lora,
           "killed": (Path(results) / f"killed-{name}").exists(), "capability_before": h["capability_before"],
           "capability_after": h["capability_after"], "results": str(path.parent)}
    print_result(out, args.json)


if __name__ == "__main__":
    main()
