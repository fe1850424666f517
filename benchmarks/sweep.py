"""Sweep cost on this machine: the cpu_demo sweep per model, and scheduling overhead of a 60-model sweep.

    python benchmarks/sweep.py [--part demo|many|both] [--models 60] [--elicitation logprob|sample] [--json]

demo: the `cpu_demo` sweep (SmolLM2, tiny-random, four simulated agents) through `run_sweep`; per model its wall
      time and the share spent starting the engine (queueing for resources + loading), answering requests,
      fitting (fits, pair selection, bootstrap) and the rest (store, results, plots). Printed as a table.
many: `--models` simulated agents on a 10-outcome set, each its own Ray task and engine pool, so the work per model
      is tiny and the sweep's cost is mostly scheduling: overhead per model = (sweep wall - ideal) / models, where
      ideal = sum over models of their work after their engine was up / concurrent slots.
JSON keys: demo_wall_s, demo_models (list of per-model rows), many_models, many_wall_s, many_in_task_s,
many_slots, many_overhead_per_model_s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compose(overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return OmegaConf.to_container(hydra_compose(config_name="config", overrides=overrides), resolve=True)


def demo(results: Path, elicitation: str) -> dict:
    from uetool.runtime.sweep import run_sweep

    cfg = compose(["sweep=cpu_demo", f"elicitation={elicitation}", f"results_root={results}", "progress=false"])
    start = time.perf_counter()
    out = run_sweep(cfg, ROOT / "conf")
    wall = time.perf_counter() - start
    rows = []
    for r in out["records"]:
        s = r.get("seconds") or {}
        total = float(s.get("total") or float("nan"))
        rows.append({"model": r["model"], "status": r["status"], "total_s": total,
                     "start_share": s.get("engine_start", float("nan")) / total,
                     "engine_share": s.get("engine", float("nan")) / total,
                     "fit_share": s.get("fit", float("nan")) / total,
                     "overhead_share": s.get("overhead", float("nan")) / total})
    return {"demo_wall_s": wall, "demo_models": rows}


def many(results: Path, n_models: int) -> dict:
    import ray

    from uetool.runtime.sweep import run_sweep

    outcomes = results / "ten_outcomes.json"
    outcomes.parent.mkdir(parents=True, exist_ok=True)
    outcomes.write_text(json.dumps({"demo": [f"Outcome number {i}." for i in range(10)]}))
    entries = ",".join(f"{{key: sim-{i:03d}, base: sim-scale-1}}" for i in range(n_models))
    cfg = compose(["sweep=custom", "sweep.name=many", f"sweep.models=[{entries}]", "outcomes=custom",
                   f"outcomes.source={outcomes}", "outcomes.name=ten", f"results_root={results}",
                   "++sweep.pool_overrides.simulated={num_cpus: 0.25}", "sweep.report_n_boot=100",
                   "fit.bootstrap=0", "progress=false"])
    from uetool.runtime.ray_session import ensure_ray

    ensure_ray(cfg)
    slots = min(n_models, int(ray.cluster_resources().get("CPU", 1) / 0.25))
    start = time.perf_counter()
    out = run_sweep(cfg, ROOT / "conf")
    wall = time.perf_counter() - start
    failed = [r["model"] for r in out["records"] if r["status"] != "done"]
    if failed:  # checked first: a failed record has no engine_start to subtract
        raise RuntimeError(f"models failed: {failed}")
    # work after the model's engine replicas were up (queueing for a slot and actor start-up excluded)
    in_task = sum(float(r["seconds"]["total"]) - float(r["seconds"]["engine_start"]) for r in out["records"])
    ideal = in_task / slots
    return {"many_models": n_models, "many_wall_s": wall, "many_in_task_s": in_task, "many_slots": slots,
            "many_overhead_per_model_s": (wall - ideal) / n_models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("demo", "many", "both"), default="both")
    parser.add_argument("--models", type=int, default=60)
    parser.add_argument("--elicitation", choices=("logprob", "sample"), default="logprob")
    parser.add_argument("--results", type=Path, default=None, help="results root (default: a fresh temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="uetool-sweep-bench-"))
    out: dict = {}
    if args.part in ("demo", "both"):
        out.update(demo(results / "demo", args.elicitation))
    if args.part in ("many", "both"):
        out.update(many(results / "many", args.models))
    if args.json:
        print(json.dumps(out))
        return
    if "demo_models" in out:
        print(f"cpu_demo sweep ({args.elicitation}): {out['demo_wall_s']:.1f} s wall")
        print(f"{'model':26s}{'status':>8s}{'total s':>10s}{'start':>8s}{'engine':>9s}{'fit':>8s}{'overhead':>10s}")
        for row in out["demo_models"]:
            print(f"{row['model']:26s}{row['status']:>8s}{row['total_s']:>10.1f}{row['start_share']:>8.0%}"
                  f"{row['engine_share']:>9.0%}"
                  f"{row['fit_share']:>8.0%}{row['overhead_share']:>10.0%}")
    if "many_models" in out:
        print(f"\n{out['many_models']} simulated models on {out['many_slots']} slots: wall {out['many_wall_s']:.1f} s, "
              f"work {out['many_in_task_s']:.1f} s, scheduling overhead {out['many_overhead_per_model_s']:.3f} "
              "s per model")


if __name__ == "__main__":
    main()
