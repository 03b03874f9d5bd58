"""``AnnotationSource``: what a dataset's annotation files offer, the one seam between a
dataset and the rest of the data side.

A source offers its class names (``classes``), the subsets its files define (``splits``:
what ``python -m datamodules check`` lists) and the records of each (``records``), plus
which split each stage of training reads (``stage_split``: UCF-101 validates on its test
split, Something-Something v2 tests on its validation set) and whether its labels survive
a horizontal mirror (``mirrorable``: "from left to right" does not). ``VideoDataModule``
takes any source; ``check`` takes the same object (``--config``, or ``--annotations CLASS`` with the same
settings). A new dataset is one file in ``datamodules/annotations/`` holding its reader and
its source, and one config; nothing registers it. A source whose dataset the synthetic
generator imitates says how in ``synthetic`` (a ``datamodules.synthetic.layouts.Layout``
in the same file), which makes ``python -m datamodules.synthetic --layout NAME`` and the
configs' tests take it.

Bad settings fail in ``__init__``, before a model is built, with one line naming the
setting (a file that does not exist, a split outside 1-3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from datamodules.annotations.records import Annotations

if TYPE_CHECKING:
    from datamodules.synthetic.layouts import Layout

Stage = Literal["train", "val", "test"]


def require_path(setting: str, path: str | Path | None, folder: bool = False) -> None:
    """Fail with one line naming ``setting`` when a given ``path`` is absent or of the wrong kind.

    Args:
        setting: the init argument the path came from, as the user wrote it in the config.
        path: the path to check; None (an optional setting left out) passes.
        folder: a folder is expected, else a file.
    """
    if path is None:
        return
    if not Path(path).exists():
        raise FileNotFoundError(f"{setting}: {path} does not exist")
    if folder and not Path(path).is_dir():
        raise NotADirectoryError(f"{setting}: {path} is not a folder")
    if not folder and Path(path).is_dir():
        raise IsADirectoryError(f"{setting}: {path} is a folder, not a file")


def require_split(split: int) -> None:
    """The official splits of UCF-101 and HMDB-51 are 1, 2 and 3."""
    if split not in (1, 2, 3):
        raise ValueError(f"split: the official splits are 1, 2 and 3, got {split}")


def distinct_splits(files: Mapping[str, str | None]) -> tuple[str, ...]:
    """The split names whose file no earlier name has: a file serving several roles (the
    val CSV tests too) is one subset."""
    seen: set[str | None] = set()
    names = []
    for name, file in files.items():
        if file not in seen:
            seen.add(file)
            names.append(name)
    return tuple(names)


def split_reading(files: Mapping[str, str | None], stage: str) -> str:
    """The distinct split name (``distinct_splits``) that reads the file of ``stage``."""
    return next(name for name in distinct_splits(files) if files[name] == files[stage])


class AnnotationSource(ABC):
    """A dataset's annotation files: classes, splits and the records of each split.

    Subclasses set ``mirrorable = False`` when a horizontal flip changes the label,
    override ``stage_split`` when the stages do not read the splits of the same name, and
    set ``synthetic`` to the layout the synthetic generator writes for their dataset.
    """

    mirrorable: bool = True
    synthetic: ClassVar[Layout | None] = None

    @abstractmethod
    def classes(self) -> list[str]:
        """Class names in label order, read cheaply (no video is touched)."""

    @abstractmethod
    def splits(self) -> tuple[str, ...]:
        """The subsets the annotation files define, e.g. ``("train", "test")``."""

    @abstractmethod
    def records(self, split: str) -> Annotations:
        """The records of ``split`` (one of ``splits()``), labelled by ``classes()``."""

    def stage_split(self, stage: Stage) -> str:
        """The split a stage reads; the default validates on the test split (the
        two-stream paper's datasets have no validation split)."""
        return {"train": "train", "val": "test", "test": "test"}[stage]

    def _unknown(self, split: str) -> KeyError:
        return KeyError(f"{type(self).__name__} has splits {', '.join(self.splits())}, not {split!r}")
