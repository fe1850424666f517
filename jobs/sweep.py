"""python -m jobs.sweep sweep=<open_weight|paper|cpu_demo|cpu_demo_simulated|cpu_demo_analyses|custom> ...

Every experiment of `sweep.experiments` (default: compute_utilities) for every model: a model's experiments run one
after the other, each with its own engine pool; Ray runs as many models at once as the cluster holds. Results land
in `<results_root>/<experiment>/<model>/` and `<results_root>/sweeps/<sweep>/` (records, report.html, PNGs).
Runs locally (starts a Ray cluster, or attaches to RAY_ADDRESS) and unchanged under `ray job submit`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import guarded, prepare_argv

_CONF = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.sweep import run_sweep

    out = guarded(lambda: run_sweep(OmegaConf.to_container(cfg, resolve=True), _CONF))
    for record in out["records"]:
        metrics = record.get("metrics") or {}
        line = (f"holdout_accuracy={metrics.get('holdout_accuracy', float('nan')):.3f}"
                if record["status"] == "done" else f"FAILED: {record.get('error')}")
        print(f"{record['model']:32s} {record['status']:6s} {line}")
        if metrics.get("verdict"):
            print(f"{'':39s} VERDICT: {metrics['verdict']}")
    for record in out.get("analysis_records", []):
        headline = record.get("analysis") or {}
        shown = ", ".join(f"{k}={v:.3f}" for k, v in headline.items()
                          if isinstance(v, float) and (k.startswith(("score_", "top1", "top3")) or k in (
                              "mae_normalized", "order_preservation")))
        line = shown if record["status"] == "done" else f"FAILED: {record.get('error')}"
        print(f"{record['experiment'] + '/' + record['model']:48s} {record['status']:6s} {line}")
    if out["skipped"]:
        print(f"reused finished models: {', '.join(out['skipped'])}")
    print(f"report: {out['report']}")


if __name__ == "__main__":
    prepare_argv("jobs.sweep")
    main()
