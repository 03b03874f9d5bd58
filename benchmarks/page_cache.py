"""Dropping files from the page cache and checking that they left, without root.

``write_back`` writes dirty pages to the disk (they cannot be dropped), and ``evict``
advises the kernel to drop the pages of the files named (``posix_fadvise(DONTNEED)``),
nothing else on the machine. ``resident_fraction`` asks the kernel which pages are
cached (``mincore`` on a mapping that reads nothing), so a benchmark says "cold" only
where it was.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path


def write_back() -> None:
    """Write every dirty page to the disk, once after writing the files to drop: only clean
    pages can be dropped. One ``sync`` for all files: an ``fdatasync`` per file costs a
    device flush each (~1 ms here), so ``evict`` does not repeat it."""
    os.sync()


def evict(paths: Iterable[Path]) -> None:
    """Drop ``paths``' clean pages from the page cache (``write_back`` them once before)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long)
        libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        return libc
    except (OSError, AttributeError):
        return None


LIBC = _libc()


def resident_fraction(paths: Iterable[Path]) -> float | None:
    """The fraction of ``paths``' pages in the page cache (``mincore``); None where unknown."""
    if LIBC is None:
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    resident = total = 0
    for path in paths:
        size = path.stat().st_size
        if size == 0:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            address = LIBC.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED: maps, reads nothing
            if address in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (size + page - 1) // page
                vector = (ctypes.c_ubyte * pages)()
                if LIBC.mincore(address, size, vector) != 0:
                    return None
                resident += sum(byte & 1 for byte in vector)
                total += pages
            finally:
                LIBC.munmap(address, size)
        finally:
            os.close(fd)
    return resident / total if total else 0.0


def drop(files: list[Path], tries: int = 3) -> float | None:
    """Drop ``files`` from the page cache; the fraction of their pages still there.

    A page read moments ago on another core can sit in that core's batch of pages not
    yet on the kernel's lists, which ``posix_fadvise`` skips: a second try drops it."""
    left = None
    for _ in range(tries):
        evict(files)
        left = resident_fraction(files)
        if not left:
            break
    return left


def cold_cache_problem(folder: Path) -> str | None:
    """Why files under ``folder`` cannot be dropped from the page cache; None when they can."""
    if not hasattr(os, "posix_fadvise"):
        return "this OS has no posix_fadvise"
    probe = folder / "cache-probe.bin"
    probe.write_bytes(os.urandom(1 << 20))
    try:
        probe.read_bytes()
        write_back()
        left = drop([probe])
    finally:
        probe.unlink()
    if left is None:
        return "mincore is not available to check the page cache"
    if left > 0.05:
        return f"{left:.0%} of a file stayed in the page cache after posix_fadvise (tmpfs?)"
    return None
