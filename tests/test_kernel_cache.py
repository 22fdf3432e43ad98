"""Compiled kernels are cached under a folder named by all of tradefm's source: a change to any module (a kernel
another one compiles in) compiles afresh instead of running the old code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tradefm


def _cache_dir(root: Path, env: dict[str, str]) -> str:
    code = "import os, tradefm; print(os.environ['NUMBA_CACHE_DIR'])"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(root)}, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_a_changed_module_gets_a_fresh_kernel_cache(tmp_path) -> None:
    package = tmp_path / "src" / "tradefm"
    shutil.copytree(Path(tradefm.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path)}
    first = _cache_dir(package.parent, env)
    assert first.startswith(str(tmp_path / "tradefm" / "numba")) and first == _cache_dir(package.parent, env)
    beyond = package / "book" / "beyond.py"
    beyond.write_text(beyond.read_text() + "\n# changed\n")
    assert _cache_dir(package.parent, env) != first
    assert _cache_dir(package.parent, env | {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}) == str(tmp_path / "mine")
