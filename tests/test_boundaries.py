"""Import boundaries between uetool's layers, checked statically with ``ast`` over every module.

Every import is collected: ``import x``, ``from x import y``, relative imports (resolved to absolute ``uetool.``
names), imports inside functions, classes and ``if TYPE_CHECKING:`` blocks, and ``importlib.import_module`` /
``__import__`` calls whose argument is a string literal.

Rules:

- ``uetool/core`` is pure: no ray, torch, hydra, omegaconf or matplotlib, and no other uetool layer.
- ``uetool/engines``: no ray, hydra or omegaconf; nothing from runtime, io, fit or reporting.
- ``uetool/io``: no ray; nothing from runtime, fit or reporting.
- ``uetool/reporting``: no ray; nothing from runtime.
- ``uetool/analyses`` is pure like core (it may use core).
- ``uetool/sft``: no hydra or omegaconf; nothing from runtime or reporting.
- Nowhere (uetool/, jobs/, benchmarks/, tests/) is a private name (``_x``, not ``__x__``) imported from another
  first-level package of uetool (core, engines, io, fit, runtime, reporting, data); the same package may.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "uetool"

# name -> (directory relative to ROOT, forbidden modules: each one and its submodules)
BOUNDARY_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "core": (
        "uetool/core",
        (
            "ray",
            "torch",
            "hydra",
            "omegaconf",
            "matplotlib",
            "uetool.engines",
            "uetool.runtime",
            "uetool.io",
            "uetool.fit",
            "uetool.reporting",
        ),
    ),
    "engines": (
        "uetool/engines",
        ("ray", "hydra", "omegaconf", "uetool.runtime", "uetool.io", "uetool.fit", "uetool.reporting"),
    ),
    "io": ("uetool/io", ("ray", "uetool.runtime", "uetool.fit", "uetool.reporting")),
    "reporting": ("uetool/reporting", ("ray", "uetool.runtime")),
    "fit": ("uetool/fit", ("uetool.runtime", "uetool.reporting", "hydra", "omegaconf")),
    # SFT: Ray Train, TRL, DeepSpeed; typed options in, files out (no Hydra, no jobs, no drawing)
    "sft": ("uetool/sft", ("hydra", "omegaconf", "uetool.runtime", "uetool.reporting")),
    # the analyses are pure too: items and metrics over the core, nothing that runs, stores or draws
    "analyses": ("uetool/analyses", ("ray", "torch", "hydra", "omegaconf", "matplotlib", "uetool.engines",
                                     "uetool.runtime", "uetool.io", "uetool.fit", "uetool.reporting")),
}
PRIVATE_SCAN_DIRS = ("uetool", "jobs", "benchmarks", "tests")
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


@dataclass(frozen=True)
class ImportRef:
    """One imported thing: ``module`` (absolute) and, for ``from module import name``, the ``name``."""

    module: str
    name: str | None
    lineno: int
    statement: str

    def candidates(self) -> list[str]:
        """Module names this import may load: ``from a import b`` may load ``a`` and the submodule ``a.b``."""
        if self.name is None or self.name == "*":
            return [self.module]
        return [self.module, f"{self.module}.{self.name}"]

    def dotted(self) -> str:
        return self.module if self.name is None else f"{self.module}.{self.name}"


def module_name_for(path: Path, root: Path = ROOT) -> tuple[str, bool]:
    """Dotted module name of a file under ``root``, and whether it is a package ``__init__``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool, where: str) -> str:
    package = importer if is_package else importer.rpartition(".")[0]
    base = package.split(".") if package else []
    if level > len(base):
        raise ValueError(f"{where}: relative import beyond the top-level package (level {level} in {importer})")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def collect_imports(source: str, *, module: str, is_package: bool = False, path: str = "<string>") -> list[ImportRef]:
    """Every import in ``source`` (at any depth), relative ones resolved against ``module``."""
    tree = ast.parse(source, filename=path)
    refs: list[ImportRef] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            text = ast.unparse(node)
            refs.extend(ImportRef(alias.name, None, node.lineno, text) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            text = ast.unparse(node)
            if node.level:
                base = _resolve_relative(node.module, node.level, module, is_package, f"{path}:{node.lineno}")
            else:
                base = node.module or ""
            refs.extend(ImportRef(base, alias.name, node.lineno, text) for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            arg = node.args[0]
            if (
                fname in DYNAMIC_IMPORTERS
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and not arg.value.startswith(".")
            ):
                refs.append(ImportRef(arg.value, None, node.lineno, ast.unparse(node)))
    return sorted(refs, key=lambda r: (r.lineno, r.dotted()))


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def boundary_violations(
    source: str, forbidden: tuple[str, ...], *, module: str, is_package: bool = False, path: str = "<string>"
) -> list[str]:
    """``path:line: statement  (forbidden: X)`` for each import of a forbidden module (or a submodule of one)."""
    out = []
    for ref in collect_imports(source, module=module, is_package=is_package, path=path):
        hits = sorted({p for c in ref.candidates() for p in forbidden if _matches(c, p)})
        if hits:
            out.append(f"{path}:{ref.lineno}: {ref.statement}  (forbidden: {', '.join(hits)})")
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _first_level_package(module: str) -> str | None:
    """``uetool.io.files`` -> ``io``; anything outside a uetool subpackage (jobs, tests, uetool itself) -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


def private_import_violations(
    source: str, *, module: str, is_package: bool = False, path: str = "<string>"
) -> list[str]:
    """Imports of a private name (or through a private module) of uetool from another first-level package."""
    importer_pkg = _first_level_package(module)
    out = []
    for ref in collect_imports(source, module=module, is_package=is_package, path=path):
        if not _matches(ref.module, PACKAGE):
            continue
        parts = ref.dotted().split(".")[1:]
        private = [p for p in parts if p != "*" and _is_private(p)]
        if not private:
            continue
        target_pkg = parts[0]
        if target_pkg != importer_pkg:
            out.append(
                f"{path}:{ref.lineno}: {ref.statement}  (private {'.'.join(private)} of {PACKAGE}.{target_pkg}, "
                f"imported from {f'{PACKAGE}.{importer_pkg}' if importer_pkg else module})"
            )
    return out


def _python_files(directory: str) -> list[Path]:
    return sorted(p for p in (ROOT / directory).rglob("*.py") if "__pycache__" not in p.parts)


def _scan(directory: str, check) -> list[str]:
    out = []
    for file in _python_files(directory):
        module, is_package = module_name_for(file)
        rel = str(file.relative_to(ROOT))
        out.extend(check(file.read_text(encoding="utf-8"), module=module, is_package=is_package, path=rel))
    return out


# --- the rules, over the real tree -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", sorted(BOUNDARY_RULES))
def test_layer_boundary(rule):
    directory, forbidden = BOUNDARY_RULES[rule]
    assert _python_files(directory), f"{directory}: no modules found, the rule would pass vacuously"

    def check(source, **kw):
        return boundary_violations(source, forbidden, **kw)

    violations = _scan(directory, check)
    assert not violations, f"{rule}: {len(violations)} forbidden import(s):\n" + "\n".join(violations)


@pytest.mark.parametrize("directory", PRIVATE_SCAN_DIRS)
def test_no_private_names_across_packages(directory):
    assert _python_files(directory), f"{directory}: no modules found"
    violations = _scan(directory, private_import_violations)
    assert not violations, f"{directory}: {len(violations)} cross-package private import(s):\n" + "\n".join(violations)


# --- the checker itself: each of these would go unnoticed if the checker missed it ----------------------------------

CORE_RULE = BOUNDARY_RULES["core"][1]
ENGINES_RULE = BOUNDARY_RULES["engines"][1]


def test_checker_reports_forbidden_import_with_file_and_line():
    source = "import numpy as np\n\n\ndef f():\n    import ray.util\n    return ray\n"
    got = boundary_violations(source, CORE_RULE, module="uetool.core.x", path="uetool/core/x.py")
    assert got == ["uetool/core/x.py:5: import ray.util  (forbidden: ray)"]


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("from ..runtime.compute import run\n", "uetool.core.x", False, "uetool.runtime"),
        ("from .. import io\n", "uetool.core.x", False, "uetool.io"),
        ("from ..fit import torch_fit\n", "uetool.core", True, "uetool.fit"),  # from uetool/core/__init__.py
        ("from uetool import reporting as r\n", "uetool.core.x", False, "uetool.reporting"),
        ("from matplotlib.figure import Figure\n", "uetool.core.x", False, "matplotlib"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n", "uetool.core.x", False, "torch"),
        ("class A:\n    def m(self):\n        from omegaconf import OmegaConf\n", "uetool.core.x", False, "omegaconf"),
        ("import importlib\nimportlib.import_module('hydra')\n", "uetool.core.x", False, "hydra"),
    ],
)
def test_checker_catches_every_import_form(source, module, is_package, expected):
    got = boundary_violations(source, CORE_RULE, module=module, is_package=is_package, path="m.py")
    assert len(got) == 1 and expected in got[0].split("forbidden: ")[1], got


def test_checker_allows_permitted_imports():
    source = (
        "import rayleigh\nimport torchvision_like\nfrom ..core.graph import PreferenceGraph\n"
        "from . import base\nfrom .base import Engine\nimport numpy\n"
    )
    assert boundary_violations(source, ENGINES_RULE, module="uetool.engines.hf", path="e.py") == []
    # torch is allowed in engines, forbidden in core
    assert boundary_violations("import torch\n", ENGINES_RULE, module="uetool.engines.hf") == []
    assert boundary_violations("import torch\n", CORE_RULE, module="uetool.core.x") != []


def test_relative_import_resolution():
    refs = collect_imports("from ..io.files import write\nfrom . import y\n", module="uetool.runtime.compute")
    assert [r.dotted() for r in refs] == ["uetool.io.files.write", "uetool.runtime.y"]
    refs = collect_imports("from .files import write\n", module="uetool.io", is_package=True)
    assert [r.dotted() for r in refs] == ["uetool.io.files.write"]
    with pytest.raises(ValueError, match="beyond the top-level"):
        collect_imports("from ... import x\n", module="uetool.core.x")


@pytest.mark.parametrize(
    ("source", "module", "reported"),
    [
        ("from uetool.io.files import _x\n", "uetool.runtime.compute", True),
        ("from ..runtime.compute import _y\n", "uetool.io.store", True),
        ("def f():\n    from ..runtime.compute import _y\n", "uetool.io.store", True),
        ("from uetool.core.graph import _z, public\n", "tests.test_graph", True),
        ("from uetool.core.graph import _z\n", "jobs.sweep", True),
        ("import uetool.io._private_mod\n", "uetool.fit.x", True),
        ("from uetool import _hidden\n", "uetool.core.x", True),
        ("from .files import _x\n", "uetool.io.store", False),  # same package
        ("from uetool.io.files import _x\n", "uetool.io.layout", False),  # same package, absolute
        ("from uetool import __version__\n", "tests.test_x", False),  # dunder
        ("from uetool.io.files import write_atomic\n", "tests.test_x", False),  # public
        ("from jobs._cli import _main\n", "tests.test_x", False),  # not uetool
    ],
)
def test_private_checker(source, module, reported):
    got = private_import_violations(source, module=module, path="p.py")
    assert bool(got) is reported, got
    if reported:
        assert got[0].startswith("p.py:") and "import" in got[0]
