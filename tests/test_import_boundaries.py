"""DESIGN.md's package boundaries, enforced by parsing every module's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["dataplane", "queue_proxy", "activator", "autoscaler", "serving"]
_STDLIB = set(sys.stdlib_module_names)
_DATAPLANE_DEPS = {"uvloop", "httptools", "google", "prometheus_client"}

# Who may import whom (DESIGN.md, "Packages and who may import whom"). Third-party
# names a package may use beyond those listed are the ones DESIGN.md names for it.
ALLOWED: dict[str, set[str]] = {
    "dataplane": _DATAPLANE_DEPS,
    "queue_proxy": {"dataplane", "aiohttp"} | _DATAPLANE_DEPS,
    "activator": {"dataplane", "aiohttp"} | _DATAPLANE_DEPS,
    "autoscaler": {"dataplane", "numpy", "aiohttp", "yaml", "matplotlib"} | _DATAPLANE_DEPS,
    "serving": {
        "dataplane", "queue_proxy", "activator", "autoscaler", "aiohttp", "yaml",
        "kubernetes_asyncio", "aiodocker", "numpy",
    } | _DATAPLANE_DEPS,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pytest.param(pkg, path, id=str(path.relative_to(ROOT)))


def forbidden_edges(pkg: str, imported: set[str]) -> set[str]:
    """The imports of a module of `pkg` that DESIGN.md does not allow."""
    return {n for n in imported if n not in _STDLIB and n != pkg and n not in ALLOWED[pkg]}


@pytest.mark.parametrize(("pkg", "path"), list(_modules()))
def test_module_imports_only_what_design_allows(pkg, path):
    assert forbidden_edges(pkg, _imports(path)) == set()


@pytest.mark.parametrize(
    ("pkg", "imported", "bad"),
    [
        pytest.param("activator", {"autoscaler", "dataplane"}, {"autoscaler"}, id="activator-autoscaler"),
        pytest.param("autoscaler", {"activator"}, {"activator"}, id="autoscaler-activator"),
        pytest.param("dataplane", {"serving", "asyncio"}, {"serving"}, id="dataplane-is-the-floor"),
        pytest.param("queue_proxy", {"numpy"}, {"numpy"}, id="sidecar-stays-lean"),
        pytest.param("serving", {"bench"}, {"bench"}, id="nothing-imports-bench"),
    ],
)
def test_checker_flags_forbidden_edges(pkg, imported, bad):
    assert forbidden_edges(pkg, imported) == bad


def test_every_package_is_scanned():
    present = [p for p in PACKAGES if (ROOT / p / "__init__.py").exists()]
    assert "dataplane" in present
    assert len(list(_modules())) >= len(present)
