"""python -m jobs.control model=<key to tune> [assembly=<conf/assembly entry>] [sft=<conf/sft entry>] [key=value ...]

Utility control: the assembly (answered by `assembly.model`, default the model itself), SFT data, the model's
agreement with the assembly before, SFT on Ray Train (TRL + DeepSpeed), agreement after, capability check, report.
Results in `<results_root>/control/<control.name>/<model>/`. `control.dry_run=true` only checks the DeepSpeed
memory arithmetic against `sft.node_type` (exit status 2 when the node type cannot hold the model).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv, run_job


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.config import RunConfig
    from uetool.runtime.control import run_control

    def start() -> dict:
        return run_control(RunConfig.from_dict(OmegaConf.to_container(cfg, resolve=True)))

    run_job(start)


if __name__ == "__main__":
    prepare_argv("jobs.control")
    main()
