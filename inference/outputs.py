"""A file written under a temporary name and renamed into place once complete.

The JSON lines of ``classify --output`` and the video of ``--render`` are read by scripts
and players that cannot tell half a file from a whole one: a run that fails or is stopped
removes its temporary file, and one killed outright leaves only the temporary name
(``<name>.tmp-<host>-<pid>``, ``flow.ownership.temporary``), which nothing takes for the result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flow.ownership import temporary


@contextmanager
def completed_file(path: Path) -> Iterator[Path]:
    """The temporary path to write ``path``'s content to; renamed to ``path`` when the block ends
    normally, removed when it raises (Ctrl-C and SIGTERM included).

    Args:
        path: the final name; its folder is created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary(path)
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
