"""HMDB-51's ``testTrainMulti_7030_splits``: one file per class and split.

``<class>_test_split<k>.txt`` holds lines "<video>.avi <flag> " (note the trailing space)
with flag 1 = train, 2 = test, 0 = unused in that split. The files carry no class index,
so labels follow the alphabetical order of the class names, as in the usual lists
(mmaction2's, the two-stream fusion code's). Videos live in ``<class>/<video>.avi``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from datamodules.annotations.records import (
    AnnotationError,
    Annotations,
    VideoRecord,
    read_lines,
    strip_extension,
)
from datamodules.annotations.source import AnnotationSource, require_path, require_split
from datamodules.synthetic.classes import ClassSpec
from datamodules.synthetic.layouts import NUM_SPLITS, Clip, Layout, write_lines

_FLAGS = {"train": "1", "test": "2"}


def read_hmdb51(split_dir: Path | str, split: int, subset: Literal["train", "test"]) -> Annotations:
    """Read split ``split`` (1-3) of HMDB-51, ``subset`` "train" or "test"."""
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB-51 has splits 1, 2, 3; got {split}")
    if subset not in _FLAGS:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    split_dir = Path(split_dir)
    pattern = re.compile(rf"(.+)_test_split{split}\.txt")
    files = {m.group(1): path for path in split_dir.iterdir() if (m := pattern.fullmatch(path.name))}
    if not files:
        raise AnnotationError(split_dir, f"no '<class>_test_split{split}.txt' files")
    classes = sorted(files)
    records = []
    for label, name in enumerate(classes):
        for line, text in read_lines(files[name]):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(files[name], f"expected '<video>.avi <0|1|2>', got {text!r}", line)
            if parts[1] == _FLAGS[subset]:
                video = f"{name}/{parts[0]}"
                records.append(VideoRecord(strip_extension(video), video, label))
    return Annotations(classes, records)


class HMDB51Layout(Layout):
    """The synthetic HMDB-51: ``hmdb51/<class>/<video>.avi``; ``testTrainMulti_7030_splits/
    <class>_test_split{1,2,3}.txt``, lines ``<video>.avi <flag> `` (trailing space, LF), flag
    1 train / 2 test / 0 unused: about 70/30 per class, one in eight unused; classes in
    lower snake case (``move_left``).
    """

    name, fourcc, default_size, min_videos = "hmdb51", "XVID", (320, 240), 2
    video_dir, annotation_subdir = "hmdb51", "testTrainMulti_7030_splits"
    flags = {"train": 1, "test": 2, "unused": 0}

    def class_name(self, words: tuple[str, ...]) -> str:
        return "_".join(words)

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        unused = videos_per_class // 8
        test = max(1, round(0.3 * (videos_per_class - unused)))
        roles = ["test"] * test + ["unused"] * unused
        roles += ["train"] * (videos_per_class - len(roles))
        clips = []
        for index, spec in enumerate(classes):
            rng = spec.rng(seed, 2)
            per_split = [rng.permutation(roles).tolist() for _ in range(NUM_SPLITS)]
            for video in range(videos_per_class):
                # Named like the real clips: movie, action, body parts, camera motion,
                # people, viewpoint, quality, counter.
                path = f"{spec.name}/Synthetic_{spec.name}_f_nm_np1_fr_med_{video}.avi"
                clips.append(Clip(path, index, video, tuple(split[video] for split in per_split)))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        for index, spec in enumerate(classes):
            own = [c for c in clips if c.class_index == index]
            for k in range(NUM_SPLITS):
                lines = [f"{Path(c.path).name} {self.flags[c.splits[k]]} " for c in own]
                write_lines(folder / f"{spec.name}_test_split{k + 1}.txt", lines, "\n")

    def source_settings(self, annotation_dir: Path) -> dict[str, str]:
        return {"split_dir": str(annotation_dir)}


class HMDB51(AnnotationSource):
    """HMDB-51 with its official splits (``testTrainMulti_7030_splits``); validates on the test split.

    Args:
        split_dir: folder with the ``<class>_test_split<k>.txt`` files.
        split: 1, 2 or 3.
    """

    synthetic = HMDB51Layout()

    def __init__(self, split_dir: str, split: int = 1):
        require_split(split)
        require_path("split_dir", split_dir, folder=True)
        self.split_dir, self.split = split_dir, split

    def classes(self) -> list[str]:
        return self.records("test").classes  # 51 small files: cheap

    def splits(self) -> tuple[str, ...]:
        return ("train", "test")

    def records(self, split: str) -> Annotations:
        if split not in self.splits():
            raise self._unknown(split)
        return read_hmdb51(self.split_dir, self.split, split)
