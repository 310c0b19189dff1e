"""Where numba's on-disk cache of sparsetopo's compiled kernels lives (``cache=True``).

The package's own ``__pycache__`` when it is writable, else a user cache directory
(``$XDG_CACHE_HOME/sparsetopo/numba``), else none, with a warning: each process then
compiles the kernels again. ``NUMBA_CACHE_DIR`` set by the user always wins.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

__all__ = ["choose_cache_dir"]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def choose_cache_dir(package_dir: Path, what: str) -> None:
    """Point numba at a writable cache for the kernels under ``package_dir`` (``what`` names them
    in the warning when nothing is writable). Call before the kernels are compiled."""
    if "NUMBA_CACHE_DIR" in os.environ or _writable(package_dir / "__pycache__"):
        return
    user = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparsetopo" / "numba"
    if _writable(user):
        os.environ["NUMBA_CACHE_DIR"] = str(user)
        if "numba" in sys.modules:  # already imported elsewhere: make it read the variable again
            sys.modules["numba"].core.config.reload_config()
        return
    warnings.warn(f"sparsetopo: neither {package_dir / '__pycache__'} nor {user} is writable, so {what} "
                  "are not cached: each process compiles them (several seconds). Set NUMBA_CACHE_DIR to a "
                  "writable directory to avoid that.", RuntimeWarning, stacklevel=3)
