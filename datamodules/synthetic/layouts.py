"""A dataset's synthetic layout: where the generator puts the videos and the annotation files that list them.

Each reader file in ``datamodules/annotations/`` that the generator can imitate gives its
``AnnotationSource`` a ``synthetic`` layout (a subclass of :class:`Layout` in the same
file), which reproduces the real dataset's folders, file names, class names and
annotation bytes, so that the real reader runs unchanged on the generated folder.
:func:`layouts` finds them by importing every module of ``datamodules/annotations/`` and
walking the ``AnnotationSource`` subclasses, so a new dataset adds no line here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datamodules.synthetic.classes import ClassSpec

if TYPE_CHECKING:
    from datamodules.annotations.source import AnnotationSource

NUM_SPLITS = 3


@dataclass(frozen=True)
class Clip:
    """One video to generate.

    ``path`` is relative to the video root. Clips of one class with the same
    ``background`` share a background. ``splits`` gives the clip's role in each
    split: ``train``, ``test`` or ``unused`` (``val`` for Kinetics' one split).
    """

    path: str
    class_index: int
    background: int
    splits: tuple[str, ...]


class Layout:
    """A dataset's layout on disk: video container, default size, paths, class names, annotation files.

    ``name`` is the generator's ``--layout``; ``video_dir`` and ``annotation_subdir`` are
    relative to the output folder; ``min_videos`` per class gives every split train and
    test videos.
    """

    name: str
    fourcc: str
    default_size: tuple[int, int]
    min_videos: int
    video_dir: str
    annotation_subdir: str

    def class_name(self, words: tuple[str, ...]) -> str:
        """A class named the way the real dataset names its classes."""
        raise NotImplementedError

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        """Every video to write, with its class, background and role in each split."""
        raise NotImplementedError

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        """Write the annotation files listing ``clips`` under ``out / annotation_subdir``."""
        raise NotImplementedError

    def source_settings(self, annotation_dir: Path) -> dict[str, str]:
        """The source's init arguments (a config's ``annotations.init_args``) that read
        the generated annotation files in ``annotation_dir``."""
        raise NotImplementedError


def synthetic_sources() -> dict[str, type[AnnotationSource]]:
    """Every annotation source in ``datamodules/annotations/`` that declares a synthetic
    layout, by the layout's name (sorted)."""
    # Imported here, not at the top: the readers import this module for Layout.
    import datamodules.annotations as package
    from datamodules.annotations.source import AnnotationSource

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    found: dict[str, type[AnnotationSource]] = {}
    pending = list(AnnotationSource.__subclasses__())
    while pending:
        source = pending.pop(0)
        pending += source.__subclasses__()
        layout = vars(source).get("synthetic")  # declared by this class, not inherited
        if layout is None:
            continue
        if layout.name in found:
            raise ValueError(f"{found[layout.name].__name__} and {source.__name__} both declare the synthetic "
                             f"layout {layout.name!r}")
        found[layout.name] = source
    return dict(sorted(found.items()))


def layouts() -> dict[str, Layout]:
    """Every synthetic layout, by name: those the sources in ``datamodules/annotations/`` declare."""
    return {name: source.synthetic for name, source in synthetic_sources().items()}


def write_json(path: Path, data: object) -> None:
    """JSON as the real SSv2 files are written: one line, ``", "`` separators."""
    path.write_text(json.dumps(data), encoding="utf-8")


def write_lines(path: Path, lines: list[str], ending: str) -> None:
    """Write lines each ended by ``ending``, bytes as given (no newline translation)."""
    path.write_bytes("".join(line + ending for line in lines).encode())
