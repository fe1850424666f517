"""python -m jobs.compute_utilities model=<key> outcomes=<name or path> [key=value ...]

Runs locally (starts a Ray cluster, or attaches to RAY_ADDRESS) and unchanged under `ray job submit`.
Exit status 2: nothing could start (an old key spelling, a results root that is a file, a Ray cluster without
token authentication, a damaged store or checkpoint: see `python -m jobs.store`, a store in use by another job);
3: too many requests failed (elicitation.max_failure_rate): run it again once the engine is healthy.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.io.checkpoint import CheckpointDamaged
    from uetool.io.store import StoreDamaged
    from uetool.io.store_lock import StoreLocked
    from uetool.runtime.compute import compute_utilities
    from uetool.runtime.elicit import ElicitationFailed
    from uetool.runtime.ray_session import InsecureClusterError

    try:
        out = compute_utilities(OmegaConf.to_container(cfg, resolve=True))
    except (InsecureClusterError, StoreDamaged, CheckpointDamaged, StoreLocked) as err:  # before any engine starts
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except ElicitationFailed as err:  # an outage: what arrived is stored; the message says how to go on
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    print(out["summary"])
    print(f"results: {out['out_dir']}")


if __name__ == "__main__":
    prepare_argv("jobs.compute_utilities")
    main()
