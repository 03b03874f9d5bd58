"""Checkpoints written beside their final name and renamed complete.

Lightning's own writer (``TorchCheckpointIO``) writes a checkpoint to a temporary file in
the system's temporary folder and moves it into place. On a cluster that folder is usually
another filesystem than the run's (a node's local /tmp, a shared ``runs/``), where the move
is a copy into the final name: a job killed or out of space during the copy leaves a
truncated ``last.ckpt`` in place of the last complete one, and a small /tmp fails the save
of a checkpoint the run's disk had room for. Here the temporary file is the final name's
own (``flow.ownership.completed_file``), flushed to disk before the rename.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from flow.ownership import TMP_MARK, Writer, completed_file


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a quota, a file size limit); the file
    of that name, if there was one, is untouched."""


class CompleteCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local checkpoints appear whole or not at all (remote URLs
    are written as Lightning writes them)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        try:
            with completed_file(path) as partial, open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
        except (OSError, RuntimeError) as error:  # torch's zip writer reports a failed write as a RuntimeError
            free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
            kept = "the earlier one is kept" if path.exists() else "none was there before"
            raise CheckpointWriteError(f"cannot write checkpoint {path} ({free / 2**20:.0f} MiB free on its disk; "
                                       f"{' '.join(str(error).split())}); {kept}") from error
        remove_dead_writers_temporaries(path)


def remove_dead_writers_temporaries(path: Path) -> None:
    """Remove ``path``'s temporary files (``<name>.tmp-<host>-<pid>``) whose writer, on this
    host, is dead: what a SIGKILL during a save left. Another host's, or a live writer's, stay."""
    host = socket.gethostname()
    for partial in path.parent.glob(f"{glob.escape(path.name)}{TMP_MARK}{glob.escape(host)}-*"):
        pid = partial.name.rsplit("-", 1)[1]
        if pid.isdigit() and not Writer(host, int(pid), 0).alive():
            partial.unlink(missing_ok=True)


def write_checkpoints_complete(trainer: pl.Trainer) -> None:
    """Use ``CompleteCheckpointIO`` where the trainer would use Lightning's default writer
    (a writer a config chose, asynchronous or another, is kept)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = CompleteCheckpointIO()
