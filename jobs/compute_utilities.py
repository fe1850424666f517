"""python -m jobs.compute_utilities model=<key> outcomes=<name or path> [key=value ...]

Runs locally (starts a Ray cluster, or attaches to RAY_ADDRESS) and unchanged under `ray job submit`.
Exit status 2: nothing could start (an old key spelling, a results root that is a file, a Ray cluster without
token authentication, a damaged store or checkpoint: see `python -m jobs.store`, a store in use by another job);
3: too many requests failed (elicitation.max_failure_rate): run it again once the engine is healthy.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv, run_job


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.compute import compute_utilities

    run_job(lambda: compute_utilities(OmegaConf.to_container(cfg, resolve=True)))


if __name__ == "__main__":
    prepare_argv("jobs.compute_utilities")
    main()
