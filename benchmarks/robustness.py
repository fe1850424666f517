"""The robustness suite against simulated agents that read the rendered prompt (engine simulated_text), through a
local Ray cluster, the engine pool and the store, as `python -m jobs.robustness` runs it.

    python benchmarks/robustness.py --agent invariant|label_biased|monotone|shuffled [--suite default]
                                    [--outcomes main] [--seed 0] [--json]

Agents (their behaviour is in the prompt they read, never in a variant's name):
  invariant     utilities that no wording moves (wording_sensitivity 0)
  label_biased  answers "1" for its own sake half the time whenever a prompt offers "1" as a label
  monotone      utilities that respect every quantity series of the outcome attributes (more money is better)
  shuffled      the same agent with no such ordering (random utilities along each series)

The suite's `analyses` are left out (prompt-reading agents answer none; tests run them on engine=simulated).

JSON keys (a public contract): agent, suite, outcomes, seed, flagged_variants (list), min_stability,
monotonicity_rate, wall_s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _report import print_result  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ("invariant", "label_biased", "monotone", "shuffled")


def agent_overrides(agent: str, outcomes: str) -> list[str]:
    """Engine settings of each agent (simulated_text over tiny-random's entry, logprob base)."""
    if agent == "invariant":
        return ["engine.wording_sensitivity=0.0"]
    if agent == "label_biased":
        return ["engine.wording_sensitivity=0.0", "engine.favoured_label=1", "engine.label_bias=0.5"]
    from uetool.core.attributes import load_attributes
    from uetool.core.outcomes import load_outcomes

    attributes = load_attributes(load_outcomes(outcomes))
    series = [idx.tolist() if attributes.direction[idx[0]] > 0 else idx[::-1].tolist()
              for idx in attributes.series_members().values()]
    ordered = "[" + ",".join("[" + ",".join(map(str, s)) + "]" for s in series) + "]"
    return ["engine.wording_sensitivity=0.0"] + ([f"engine.ordered_series={ordered}"] if agent == "monotone" else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", choices=AGENTS, required=True)
    parser.add_argument("--suite", default="default")
    parser.add_argument("--outcomes", default="main")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import ray
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from uetool.runtime.robustness import run_robustness

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = OmegaConf.to_container(compose("config", overrides=[
            "model=tiny-random", "engine=simulated_text", f"robustness={args.suite}", f"outcomes={args.outcomes}",
            "elicitation=logprob", f"seed={args.seed}", "progress=false", "fit.bootstrap=0",
            f"results_root={tempfile.mkdtemp(prefix='uetool-robustness-')}",
            "robustness.analyses=[]",  # prompt-reading agents answer no analyses: the suite's variants only
            *agent_overrides(args.agent, args.outcomes)]), resolve=True)
    ray.init(include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    h = run_robustness(cfg)["robustness"]
    wall = time.perf_counter() - started
    ray.shutdown()
    print_result({"agent": args.agent, "suite": args.suite, "outcomes": args.outcomes, "seed": args.seed,
                  "flagged_variants": h["flagged_variants"], "min_stability": h["min_stability"],
                  "monotonicity_rate": h["monotonicity_rate"], "wall_s": wall}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
