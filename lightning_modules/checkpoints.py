"""``ckpt_path="last"`` and ``"best"`` found from the files, so a new process finds them.

Lightning resolves ``"best"`` from the in-memory state of a fit run in the same process,
and ``"last"`` only where the folder was fixed before the run; a ``test`` in a new
process loads nothing. Here ``last`` is the last-checkpoint callback's file in its folder,
and ``best`` is the best checkpoint of the latest fit as that file records it: every
checkpoint carries the state of each ModelCheckpoint of the run, whose
``best_model_path`` is the file Lightning's own ``"best"`` would load.
"""

from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info


class CheckpointNotFoundError(FileNotFoundError):
    """``last`` or ``best`` asked for where there is none."""


def last_path(last: ModelCheckpoint) -> Path:
    """Where the last-checkpoint callback writes (its folder must be set)."""
    if last.dirpath is None:
        raise ValueError("the last-checkpoint callback has no folder (dirpath)")
    return Path(last.dirpath) / f"{last.filename or ModelCheckpoint.CHECKPOINT_NAME_LAST}{last.FILE_EXTENSION}"


def _holds(folder: Path) -> str:
    if not folder.is_dir():
        return "which does not exist"
    names = sorted(path.name for path in folder.glob(f"*{ModelCheckpoint.FILE_EXTENSION}"))
    return f"which holds {', '.join(names)}" if names else "which holds no checkpoint"


def find_last(last: ModelCheckpoint) -> Path:
    """The last checkpoint, or ``CheckpointNotFoundError`` naming the folder looked in."""
    path = last_path(last)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"no last checkpoint: {path.name} is not in {path.parent}, {_holds(path.parent)}; run fit with this "
            "config first, or give the checkpoint's path")
    return path


def find_best(best: ModelCheckpoint, last: ModelCheckpoint) -> Path:
    """The best checkpoint of the latest fit (by ``best``'s monitor), as the last checkpoint records it."""
    record = last_path(last)
    if not record.is_file():
        raise CheckpointNotFoundError(
            f"no best checkpoint: the latest fit's {record.name}, which records it, is not in {record.parent}, "
            f"{_holds(record.parent)}; run fit with this config first, or give the checkpoint's path")
    states = torch.load(record, map_location="cpu", weights_only=True, mmap=True).get("callbacks", {})
    recorded = (states.get(best.state_key) or {}).get("best_model_path")
    if not recorded:
        monitors = sorted({str(state.get("monitor")) for state in states.values() if "best_model_path" in state})
        raise CheckpointNotFoundError(
            f"no best checkpoint: {record} records none by {best.monitor!r} (its checkpoint callbacks monitor "
            f"{', '.join(monitors) or 'nothing'}); a fit saves one after its first validation")
    # The recorded path is absolute; a folder copied elsewhere still has the file by name.
    for path in (Path(recorded), Path(best.dirpath or record.parent) / Path(recorded).name):
        if path.is_file():
            return path
    raise CheckpointNotFoundError(f"no best checkpoint: {record} names {recorded}, which is gone, and "
                                  f"{Path(recorded).name} is not in {best.dirpath} either")


def resolve_ckpt_path(ckpt_path: str | None, best: ModelCheckpoint, last: ModelCheckpoint,
                      stage: str) -> str | None:
    """``ckpt_path`` with ``"last"`` and ``"best"`` replaced by the files they mean.

    A ``fit`` with ``"last"`` and no last checkpoint yet starts from scratch (a job can
    always pass ``--ckpt_path last``, as Lightning allows); every other stage needs the file.
    """
    if ckpt_path == "best":
        return str(find_best(best, last))
    if ckpt_path != "last":
        return ckpt_path
    if stage == "fit" and not last_path(last).is_file():
        rank_zero_info(f"--ckpt_path last: no {last_path(last)} yet, so training starts from scratch")
        return None
    return str(find_last(last))
