"""serving.kubernetes as a package: its pure half imports without kubernetes_asyncio,
its docstring names every module, and __all__ names only what it exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import serving.kubernetes as package

PACKAGE_DIR = Path(package.__file__).parent
IO_MODULES = ["client", "informer", "controller", "autoscaler_main", "activator_main"]


@pytest.mark.integration
def test_importing_the_package_never_loads_kubernetes_asyncio():
    # A fresh interpreter: this one has likely loaded it through other tests already.
    code = ("import sys, serving.kubernetes, serving.kubernetes.routing, "
            "serving.kubernetes.endpoints; print('kubernetes_asyncio' in sys.modules); "
            "import serving.kubernetes.client; print('kubernetes_asyncio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, cwd=PACKAGE_DIR.parents[1])
    assert out.stdout.split() == ["False", "True"]  # the second shows the probe can see it


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE_DIR.glob("*.py")
                                          if p.stem != "__init__"))
def test_docstring_names_every_module(module):
    assert f"`{module}`" in package.__doc__


@pytest.mark.parametrize("module", IO_MODULES)
def test_io_modules_are_not_imported_by_the_package(module):
    source = (PACKAGE_DIR / "__init__.py").read_text()
    assert f".{module} import" not in source and f"import {module}" not in source


def test_all_names_exist_once():
    assert len(set(package.__all__)) == len(package.__all__)
    assert [n for n in package.__all__ if not hasattr(package, n)] == []
