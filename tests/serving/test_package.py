"""serving's package surface: every public name resolves; the CLI path stays light."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import serving


@pytest.mark.parametrize("name", serving.__all__)
def test_every_public_name_resolves_to_its_module(name):
    module = importlib.import_module(f"serving.{serving._EXPORTS[name]}")
    assert getattr(serving, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        serving.nope  # noqa: B018


HEAVY = ["numpy", "aiohttp", "yaml", "uvloop", "autoscaler", "activator", "serving.state",
         "serving.stack", "serving.admin"]


@pytest.mark.integration
def test_importing_the_cli_pulls_in_no_stack_numpy_or_aiohttp():
    # Each `surge get` is a fresh interpreter: what the CLI imports is its start-up time.
    code = ("import json, sys, serving.cli; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == []
