"""`import uetool` is light and exposes the public API lazily; heavy libraries load only where they are used."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("numpy", "pandas", "scipy", "torch", "ray", "transformers", "vllm", "hydra", "matplotlib")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys, json; {code}; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_import_uetool_loads_no_heavy_library():
    assert not _modules_after("import uetool") & set(HEAVY)


def test_the_job_modules_load_neither_torch_nor_ray_until_they_need_them():
    loaded = _modules_after("import uetool.runtime.compute, uetool.runtime.config, uetool.io.store")
    assert "torch" not in loaded and "ray" not in loaded and "matplotlib" not in loaded


def test_public_api_resolves_lazily_to_the_real_functions():
    import uetool
    from uetool.core.thurstonian import fit_thurstonian
    from uetool.io.results import read_results
    from uetool.runtime.compute import compute_utilities
    from uetool.runtime.sweep import run_sweep

    assert uetool.compute_utilities is compute_utilities and uetool.run_sweep is run_sweep
    assert uetool.fit_thurstonian is fit_thurstonian and uetool.load_results is read_results
    assert set(uetool.__all__) >= {"compute_utilities", "run_sweep", "fit_thurstonian", "load_results"}
    try:
        uetool.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("unknown attributes must raise AttributeError")
