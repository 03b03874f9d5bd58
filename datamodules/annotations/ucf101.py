"""UCF-101's ``ucfTrainTestlist``: classInd.txt, trainlist0k.txt, testlist0k.txt.

classInd.txt numbers classes from 1 ("1 ApplyEyeMakeup"); we shift to 0-based. Train lists
give "Class/v_X.avi <1-based label>", test lists only the path, so a test label comes from
the folder name. The folder is ``HandstandPushups/`` while its files are
``v_HandStandPushups_*``: the folder, not the file name, names the class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datamodules.annotations.records import (
    AnnotationError,
    Annotations,
    VideoRecord,
    parse_int,
    read_lines,
    strip_extension,
)
from datamodules.annotations.source import AnnotationSource, require_path, require_split
from datamodules.synthetic.classes import ClassSpec
from datamodules.synthetic.layouts import NUM_SPLITS, Clip, Layout, write_lines


def read_class_index(path: Path | str) -> list[str]:
    """classInd.txt -> class names in 0-based label order."""
    numbered: dict[int, str] = {}
    for line, text in read_lines(path):
        parts = text.split()
        if len(parts) != 2:
            raise AnnotationError(path, f"expected '<index> <class>', got {text!r}", line)
        index = parse_int(parts[0], path, line, "class index")
        if index in numbered:
            raise AnnotationError(path, f"class index {index} listed twice", line)
        numbered[index] = parts[1]
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise AnnotationError(path, f"class indices must run 1..{len(numbered)} without gaps")
    return [numbered[index] for index in range(1, len(numbered) + 1)]


def _label_of_folder(folder: str, lookup: dict[str, int], folded: dict[str, int]) -> int | None:
    # Exact match first; a case-insensitive one catches renamed folders (HandStandPushups).
    return lookup.get(folder, folded.get(folder.lower()))


def read_ucf101(annotation_dir: Path | str, split: int, subset: Literal["train", "test"]) -> Annotations:
    """Read split ``split`` (1-3) of UCF-101, ``subset`` "train" or "test"."""
    if split not in (1, 2, 3):
        raise ValueError(f"UCF-101 has splits 1, 2, 3; got {split}")
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    annotation_dir = Path(annotation_dir)
    classes = read_class_index(annotation_dir / "classInd.txt")
    lookup = {name: label for label, name in enumerate(classes)}
    folded = {name.lower(): label for label, name in enumerate(classes)}
    path = annotation_dir / f"{subset}list{split:02d}.txt"
    records = []
    for line, text in read_lines(path):
        parts = text.split()
        expected = 2 if subset == "train" else 1
        if len(parts) != expected:
            shape = "'<Class>/<video>.avi <label>'" if subset == "train" else "'<Class>/<video>.avi'"
            raise AnnotationError(path, f"expected {shape}, got {text!r}", line)
        video = parts[0]
        folder_label = _label_of_folder(video.split("/")[0], lookup, folded) if "/" in video else None
        if subset == "train":
            label = parse_int(parts[1], path, line, "label") - 1
            if not 0 <= label < len(classes):
                raise AnnotationError(path, f"label {label + 1} outside classInd.txt's 1..{len(classes)}", line)
            if folder_label is not None and folder_label != label:
                message = f"label {label + 1} ({classes[label]}) disagrees with the folder of {video!r}"
                raise AnnotationError(path, message, line)
        elif folder_label is None:
            raise AnnotationError(path, f"the folder of {video!r} is no class of classInd.txt", line)
        else:
            label = folder_label
        records.append(VideoRecord(strip_extension(video), video, label))
    return Annotations(classes, records)


class UCF101Layout(Layout):
    """The synthetic UCF-101: ``UCF-101/<Class>/v_<Class>_gGG_cCC.avi``; ``ucfTrainTestlist/``
    with ``classInd.txt``, ``trainlist0k.txt``, ``testlist0k.txt`` (CRLF), classes in
    CamelCase (``MoveLeft``).

    Clips come in groups that share a background (the real groups share actor and scene);
    split k tests the k-th block of groups, the last groups are always trained on, as in
    the real splits (7 of 25 groups tested per split, groups 22-25 never).
    """

    name, fourcc, default_size, min_videos = "ucf101", "XVID", (320, 240), 3
    video_dir, annotation_subdir = "UCF-101", "ucfTrainTestlist"

    def class_name(self, words: tuple[str, ...]) -> str:
        return "".join(word.capitalize() for word in words)

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        num_groups = min(25, max(3, videos_per_class // 2))
        tested = max(1, num_groups * 7 // 25)
        clips = []
        for index, spec in enumerate(classes):
            for group in range(num_groups):
                splits = tuple("test" if group // tested == k else "train" for k in range(NUM_SPLITS))
                # Clips spread as evenly as possible over the groups, the first ones taking the extra.
                size = videos_per_class // num_groups + (group < videos_per_class % num_groups)
                for clip in range(size):
                    stem = f"v_{spec.name}_g{group + 1:02d}_c{clip + 1:02d}"
                    clips.append(Clip(f"{spec.name}/{stem}.avi", index, group, splits))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        write_lines(folder / "classInd.txt", [f"{i + 1} {spec.name}" for i, spec in enumerate(classes)], "\r\n")
        for k in range(NUM_SPLITS):
            train = [f"{c.path} {c.class_index + 1}" for c in clips if c.splits[k] == "train"]
            test = [c.path for c in clips if c.splits[k] == "test"]
            write_lines(folder / f"trainlist{k + 1:02d}.txt", train, "\r\n")
            write_lines(folder / f"testlist{k + 1:02d}.txt", test, "\r\n")

    def source_settings(self, annotation_dir: Path) -> dict[str, str]:
        return {"annotation_dir": str(annotation_dir)}


class UCF101(AnnotationSource):
    """UCF-101 with its official splits (``ucfTrainTestlist``); validates on the test split.

    Args:
        annotation_dir: folder with classInd.txt, trainlist0k.txt, testlist0k.txt.
        split: 1, 2 or 3.
    """

    synthetic = UCF101Layout()

    def __init__(self, annotation_dir: str, split: int = 1):
        require_split(split)
        require_path("annotation_dir", annotation_dir, folder=True)
        for name in ("classInd.txt", f"trainlist{split:02d}.txt", f"testlist{split:02d}.txt"):
            require_path("annotation_dir", Path(annotation_dir) / name)
        self.annotation_dir, self.split = annotation_dir, split

    def classes(self) -> list[str]:
        return read_class_index(Path(self.annotation_dir) / "classInd.txt")

    def splits(self) -> tuple[str, ...]:
        return ("train", "test")

    def records(self, split: str) -> Annotations:
        if split not in self.splits():
            raise self._unknown(split)
        return read_ucf101(self.annotation_dir, self.split, split)
