"""Joining untrusted relative names (video ids from annotation files) onto a root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


def safe_join(root: Path | str, relative: str) -> Path:
    """``root / relative`` as an absolute path, refusing names that leave ``root``.

    A video id comes from annotation files and meta data we do not control, so ``..``
    components and absolute paths are refused. The check is lexical on purpose:
    symlinks placed inside the root by the user (a dataset spread over several disks,
    a symlink farm) are the user's layout, not an escape, and are followed as usual.
    """
    if not relative or PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute():
        raise ValueError(f"entry {relative!r} must be a non-empty relative path")
    base = Path(os.path.abspath(root))
    target = Path(os.path.normpath(base / relative))
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"entry {relative!r} must lie inside the root {str(base)!r}")
    return target
