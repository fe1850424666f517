"""python -m jobs.plan sweep=<open_weight|paper|cpu_demo|custom ...> [experiment=<name>] [cost.accelerator=H200]

What a sweep will cost, before it starts: per model and experiment the requests, prompt and generated tokens, the
estimated device-hours (GPU-hours on `cost.accelerator`, CPU-hours for CPU models) and wall time (tensor-parallel
size and replicas taken into account), dollars for API models (conf/cost/default.yaml's dated prices), and the same
for the paper's method on its own budget. Starts no engine and no Ray cluster; uses the real templates, outcome sets
and active-learning budget, and each model's tokenizer where it is available offline (else characters / 4). Writes
<results_root>/sweeps/<sweep>/plan.csv and plan.json. Exit status 2: a bad config, named in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import guarded, prepare_argv

_CONF = Path(__file__).resolve().parent.parent / "conf"


def _hours(value) -> str:
    if value is None or value != value:
        return "-"
    return f"{value * 60:.1f} min" if value < 1 else f"{value:,.1f} h"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def format_plan(table, totals: dict) -> str:
    lines = [f"{'model':32s} {'experiment':18s} {'device':6s} {'tp':>2s} {'rep':>3s} {'requests':>9s} "
             f"{'tokens':>9s} {'device-h':>10s} {'wall':>9s} {'dollars':>8s} | {'paper tokens':>12s} "
             f"{'paper dev-h':>11s}"]
    for row in table.itertuples():
        dollars = "-" if row.dollars is None or row.dollars != row.dollars else f"{row.dollars:,.2f}"
        lines.append(f"{row.model:32s} {row.experiment:18s} {row.device:6s} {row.tensor_parallel_size:>2d} "
                     f"{row.replicas:>3d} {_count(row.requests):>9s} {_count(row.tokens_computed):>9s} "
                     f"{_hours(row.device_hours):>10s} {_hours(row.wall_h):>9s} {dollars:>8s} | "
                     f"{_count(row.reference_tokens):>12s} {_hours(row.reference_device_hours):>11s}"
                     + ("  (tokens estimated from characters)" if row.tokenizer == "chars" else ""))
    share = totals["tokens_share_of_reference"]
    lines.append(f"total: {totals['models']} models, {totals['runs']} runs, {_count(totals['requests'])} requests, "
                 f"{_count(totals['tokens_computed'])} tokens computed ("
                 + (f"{100 * share:.1f}% of the paper method's {_count(totals['reference_tokens'])}"
                    if share else "no reference") + f"); {totals['gpu_hours']:,.1f} GPU-hours on "
                 f"{totals['accelerator']} (paper's method: {totals['reference_gpu_hours']:,.1f}), "
                 f"{totals['cpu_hours']:,.2f} CPU-hours, ${totals['dollars']:,.2f} of API calls (paper's method: "
                 f"${totals['reference_dollars']:,.2f}); wall time about {_hours(totals['wall_h'])}"
                 + (f" on {totals['cluster_gpus']} GPUs" if totals["gpu_hours"] else ""))
    return "\n".join(lines)


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.io.files import write_atomic
    from uetool.io.layout import ResultsLayout
    from uetool.io.results import json_safe
    from uetool.runtime.plan import plan_table

    raw = OmegaConf.to_container(cfg, resolve=True)
    table, totals = guarded(lambda: plan_table(raw, _CONF))
    print(format_plan(table, totals))
    layout = ResultsLayout(raw["results_root"])
    fs, out_dir = layout.filesystem[0], layout.sweep_dir(raw["sweep"]["name"])
    fs.create_dir(out_dir, recursive=True)
    write_atomic(fs, f"{out_dir}/plan.csv", table.to_csv(index=False).encode())
    write_atomic(fs, f"{out_dir}/plan.json", json.dumps(json_safe(totals), indent=2).encode())
    print(f"plan: {out_dir}/plan.csv")


if __name__ == "__main__":
    prepare_argv("jobs.plan")
    main()
