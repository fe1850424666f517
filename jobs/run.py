"""python -m jobs.run experiment=<compute_utilities|expected_utility|expected_utility_implicit|instrumentality|
maximization> model=<key> [key=value ...]

One experiment for one model; results in `<results_root>/<experiment>/<model>/`. Runs locally (starts a Ray
cluster, or attaches to RAY_ADDRESS) and unchanged under `ray job submit`. Exit status 2: nothing could start (a bad
config or data file, an old key spelling, a results root that is a file, a Ray cluster without token
authentication, a damaged store or checkpoint, a store in use by another job); 3: too many requests failed
(elicitation.max_failure_rate): run it again once the engine is healthy.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv, run_job


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.analysis import run_analysis
    from uetool.runtime.compute import compute_utilities
    from uetool.runtime.config import RunConfig

    def start() -> dict:
        run = RunConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))
        return compute_utilities(run) if run.analysis is None else run_analysis(run)

    run_job(start)


if __name__ == "__main__":
    prepare_argv("jobs.run")
    main()
