"""mmaction2-style list files: "<video> <label>" or "<frame_dir> <num_frames> <label>".

Labels are already 0-based. The name may hold spaces (Kinetics labels do), so the numbers
are split off from the right.
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
from datamodules.annotations.source import (
    AnnotationSource,
    distinct_splits,
    require_path,
    split_reading,
)


def read_list_file(
    path: Path | str, kind: Literal["video", "rawframes"] = "video", classes: list[str] | None = None
) -> Annotations:
    """Read a list file; without ``classes`` the class names are the label numbers."""
    if kind not in ("video", "rawframes"):
        raise ValueError(f"kind must be 'video' or 'rawframes', got {kind!r}")
    numbers = 1 if kind == "video" else 2
    shape = "'<video> <label>'" if kind == "video" else "'<frame_dir> <num_frames> <label>'"
    records = []
    for line, text in read_lines(path):
        parts = text.rsplit(None, numbers)
        if len(parts) != numbers + 1:
            raise AnnotationError(path, f"expected {shape}, got {text!r}", line)
        label = parse_int(parts[-1], path, line, "label")
        if label < 0 or (classes is not None and label >= len(classes)):
            raise AnnotationError(path, f"label {label} outside 0..{len(classes) - 1 if classes else 'N'}", line)
        if kind == "video":
            records.append(VideoRecord(strip_extension(parts[0]), parts[0], label))
        else:
            num_frames = parse_int(parts[1], path, line, "frame count")
            records.append(VideoRecord(parts[0].rstrip("/"), None, label, num_frames))
    if classes is None:
        classes = [str(label) for label in range(max((r.label for r in records), default=-1) + 1)]
    return Annotations(list(classes), records)


class ListFiles(AnnotationSource):
    """mmaction2-style list files: "<video> <label>" or "<frame_dir> <num_frames> <label>".

    Args:
        train_list: the training list.
        val_list: the validation list; None: test_list.
        test_list: the test list; None: val_list.
        class_names: a file with one class name per line in label order; None: the
            classes are the label numbers of train_list.
        list_kind: video (paths to video files) or rawframes (frame folders under frames_root).
    """

    def __init__(
        self,
        train_list: str,
        val_list: str | None = None,
        test_list: str | None = None,
        class_names: str | None = None,
        list_kind: Literal["video", "rawframes"] = "video",
    ):
        if val_list is None and test_list is None:
            raise ValueError("give val_list, test_list or both")
        for setting, path in (("train_list", train_list), ("val_list", val_list), ("test_list", test_list),
                              ("class_names", class_names)):
            require_path(setting, path)
        self.lists = {"train": train_list, "val": val_list or test_list, "test": test_list or val_list}
        self.class_names, self.list_kind = class_names, list_kind

    @classmethod
    def from_path(cls, path: Path | str, split: int = 1, label_map: Path | str | None = None,
                  list_kind: str = "video") -> ListFiles:
        """One list file, checked as one subset."""
        return cls(str(path), test_list=str(path), class_names=str(label_map) if label_map else None,
                   list_kind=list_kind)

    def classes(self) -> list[str]:
        if self.class_names is not None:
            return [text for _, text in read_lines(self.class_names)]
        return read_list_file(self.lists["train"], self.list_kind).classes

    def splits(self) -> tuple[str, ...]:
        return distinct_splits(self.lists)

    def stage_split(self, stage: str) -> str:
        return split_reading(self.lists, stage)

    def records(self, split: str) -> Annotations:
        if split not in self.lists:
            raise self._unknown(split)
        return read_list_file(self.lists[split], self.list_kind, self.classes())
