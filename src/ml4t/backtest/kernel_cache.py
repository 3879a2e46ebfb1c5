"""Keep numba's on-disk cache of the kernels consistent with their sources.

Numba's ``cache=True`` checks only the source file of the function it compiled, not the
files of the kernels that function calls. Our kernels call across modules
(``signal_kernel`` calls ``fill_phase``, ``fills``, ``costs``, ``matching``...), so after a
change to one file a caller could be loaded stale from the cache. :func:`drop_stale_cache`
keeps a stamp of every kernel source beside the cache and deletes the cached kernels when
any source differs. It runs once, when the package is imported, before any kernel is
compiled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["drop_stale_cache"]

KERNELS = Path(__file__).resolve().parent / "kernels"


def drop_stale_cache(kernels: Path = KERNELS) -> bool:
    """Delete cached kernels compiled from other kernel sources; True if it deleted any."""
    digest = hashlib.sha256()
    for source in sorted(kernels.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    cache = kernels / "__pycache__"
    stamp = cache / "kernels.stamp"
    try:
        if stamp.is_file() and stamp.read_text() == digest.hexdigest():
            return False
        stale = [*cache.glob("*.nbi"), *cache.glob("*.nbc")]
        for path in stale:
            path.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        return False
    return bool(stale)
