"""python -m jobs.compute_utilities model=<key> outcomes=<name or path> [key=value ...]

Runs locally (starts a Ray cluster, or attaches to RAY_ADDRESS) and unchanged under `ray job submit`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.compute import compute_utilities

    out = compute_utilities(OmegaConf.to_container(cfg, resolve=True))
    print(out["summary"])
    print(f"results: {out['out_dir']}")


if __name__ == "__main__":
    prepare_argv("jobs.compute_utilities")
    main()
