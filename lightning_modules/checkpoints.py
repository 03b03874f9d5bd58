"""``ckpt_path="last"`` and ``"best"`` found from the files, so a new process finds them.

Lightning resolves ``"best"`` from the in-memory state of a fit run in the same process,
and ``"last"`` only where the folder was fixed before the run; a ``test`` in a new
process loads nothing. Here ``last`` is the last-checkpoint callback's file in its folder,
and ``best`` is the best checkpoint of the latest fit as that file records it: every
checkpoint carries the state of each ModelCheckpoint of the run, whose
``best_model_path`` is the file Lightning's own ``"best"`` would load.

A checkpoint file is checked before a run starts (``check_checkpoint_file``): an empty,
truncated or foreign file is named in one line instead of failing deep inside Lightning.
"""

import zipfile
from pathlib import Path

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info


class CheckpointNotFoundError(FileNotFoundError):
    """``last`` or ``best`` asked for where there is none."""


class CheckpointFileError(ValueError):
    """A checkpoint file that is missing, empty, truncated or not a Lightning checkpoint."""


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
    try:
        check_checkpoint_file(record, "test")
    except CheckpointFileError as error:
        raise CheckpointFileError(f"the latest fit's {record}, which records the best, {error}") from None
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


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in head


def check_checkpoint_file(path: str | Path, stage: str) -> None:
    """Raise ``CheckpointFileError`` saying what is wrong with ``path`` if ``stage`` cannot load it.

    torch.save (and so Lightning) writes a zip archive whose directory is at the end: a file
    cut short by a full disk or a killed copy has none, which ``zipfile`` sees without
    reading the tensors. The load itself is memory-mapped, so a large file costs little.
    Resuming a fit also needs the optimizer states, which ``save_weights_only`` leaves out.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointFileError("no such file")
    if path.is_dir():
        raise CheckpointFileError("is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFileError("is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            head = file.read(512)
        if head.startswith(b"PK"):
            raise CheckpointFileError(f"is truncated: {size} bytes of a zip archive whose end is missing "
                                     "(an interrupted save or copy)")
        kind = "a text file" if _looks_like_text(head) else "not a zip archive"
        raise CheckpointFileError(f"is {kind}, not a checkpoint (torch.save writes a zip archive)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - whatever torch says, the file is unusable
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointFileError(f"cannot be loaded ({type(error).__name__}: {reason})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointFileError("holds no state_dict: not a Lightning checkpoint")
    if stage == "fit" and "optimizer_states" not in state:
        raise CheckpointFileError("holds only weights (saved with save_weights_only), so a fit cannot resume "
                                  "from it")
