"""python -m jobs.robustness model=<key> robustness=default|cpu [outcomes=<name or path>] [elicitation=...]

Are the utilities a property of the model or of the prompt? Runs the base configuration and every variant of the
suite (conf/robustness/: paraphrases, label sets, system prompts, K, temperature, logprob against sampling, repeated
seeds), each a compute_utilities run of its own through one engine pool and the model's response store, and compares
them: results in <results_root>/robustness/<model>/<suite>/ (report.html, variants.csv, outcomes.parquet, ...).
Exit status 2: a bad config or input, named in one line.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv, run_job


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.robustness import run_robustness

    def start() -> dict:
        raw = OmegaConf.to_container(cfg, resolve=True)
        if not raw.get("robustness"):
            raise ValueError("choose a suite: robustness=default or robustness=cpu (conf/robustness/)")
        return run_robustness(raw)

    run_job(start)


if __name__ == "__main__":
    prepare_argv("jobs.robustness")
    main()
