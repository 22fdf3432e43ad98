"""tradefm: foundation models of market order flow.

``tradefm.load(path)`` gives a trained run as a market simulator (``rollout(...)``, ``env(...)``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__version__ = "0.1.0"


def _kernel_cache() -> None:
    """Numba keeps a compiled kernel by the timestamp of its own file only, so a kernel that compiles in one
    from another module (the simulator's step takes in the engine's, the codec's and the depth beyond the
    window's) would go on running the old code after that other module changed. The cache folder is therefore
    named by a hash of all of tradefm's source: any change compiles afresh. A ``NUMBA_CACHE_DIR`` already set
    is left alone; the setting only holds if tradefm is imported before numba."""
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(home / "tradefm" / "numba" / digest.hexdigest()[:16])


_kernel_cache()


def load(path, device: str | None = None, dtype: str = "float32"):
    """A run folder or a model folder as a :class:`tradefm.api.MarketSimulator`."""
    from .api import load as _load

    return _load(path, device, dtype)


__all__ = ["__version__", "load"]
