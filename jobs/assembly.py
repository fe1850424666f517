"""python -m jobs.assembly model=<key simulating the citizens> [assembly=<conf/assembly entry>] [key=value ...]

A citizen assembly over preference questions of the run's outcomes; results in
`<results_root>/assembly/<assembly.name>/<model>/`. Resumes from the response store after a kill. Exit status 2:
nothing could start (bad config, unreadable PUMS file, store in use, ...); 3: too many requests failed.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from jobs._cli import prepare_argv, run_job


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from uetool.runtime.assembly import run_assembly
    from uetool.runtime.config import RunConfig

    def start() -> dict:
        raw = OmegaConf.to_container(cfg, resolve=True)
        raw.setdefault("assembly", {})["model"] = None  # here `model` is the one answering as the citizens
        result = run_assembly(RunConfig.from_dict(raw))
        return {"summary": result.summary, "out_dir": result.out_dir}

    run_job(start)


if __name__ == "__main__":
    prepare_argv("jobs.assembly")
    main()
