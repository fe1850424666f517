"""python -m jobs.run experiment=<compute_utilities|expected_utility|expected_utility_implicit|instrumentality|
maximization> model=<key> [key=value ...]

One experiment for one model; results in `<results_root>/<experiment>/<model>/`. Runs locally (starts a Ray
cluster, or attaches to RAY_ADDRESS) and unchanged under `ray job submit`. Exit status 2: nothing could start (a bad
config or data file, an old key spelling, a results root that is a file, a Ray cluster without token
authentication, a damaged store or checkpoint, a store in use by another job); 3: too many requests failed
(elicitation.max_failure_rate): run it again once the engine is healthy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv

_CONF = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.io.checkpoint import CheckpointDamaged
    from uetool.io.store import StoreDamaged
    from uetool.io.store_lock import StoreLocked
    from uetool.runtime.analysis import run_analysis
    from uetool.runtime.compute import compute_utilities
    from uetool.runtime.config import RunConfig
    from uetool.runtime.elicit import ElicitationFailed
    from uetool.runtime.ray_session import InsecureClusterError

    try:
        run = RunConfig.from_dict(OmegaConf.to_container(cfg, resolve=True))
        if run.analysis is None:
            out = compute_utilities(run)
        else:
            out = run_analysis(run, conf_dir=_CONF)
    except (ValueError, InsecureClusterError, StoreDamaged, CheckpointDamaged, StoreLocked) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except ElicitationFailed as err:  # an outage: what arrived is stored; the message says how to go on
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    print(out["summary"])
    print(f"results: {out['out_dir']}")


if __name__ == "__main__":
    prepare_argv("jobs.run")
    main()
