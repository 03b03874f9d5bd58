"""A dataset's synthetic layout: where the generator puts the videos and the annotation files that list them.

Each reader file in ``datamodules/annotations/`` that the generator can imitate gives its
``AnnotationSource`` a ``synthetic`` layout (a subclass of :class:`Layout` in the same
file), which reproduces the real dataset's folders, file names, class names and
annotation bytes, so that the real reader runs unchanged on the generated folder.
``datamodules/synthetic/discovery.py`` finds them, so a new dataset adds no line here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from datamodules.synthetic.classes import ClassSpec

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


def write_json(path: Path, data: object) -> None:
    """JSON as the real SSv2 files are written: one line, ``", "`` separators."""
    path.write_text(json.dumps(data), encoding="utf-8")


def write_lines(path: Path, lines: list[str], ending: str) -> None:
    """Write lines each ended by ``ending``, bytes as given (no newline translation)."""
    path.write_bytes("".join(line + ending for line in lines).encode())
