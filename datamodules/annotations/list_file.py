"""mmaction2-style list files: "<video> <label>" or "<frame_dir> <num_frames> <label>".

Labels are already 0-based. The name may hold spaces (Kinetics labels do), so the numbers
are split off from the right: every integer ending the row. More of them than the format
has is another mmaction2 format (an offset column, several labels), read where
unambiguous and otherwise refused naming the line, never taken as part of the name.
"""

from __future__ import annotations

import re
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

_INTEGER = re.compile(r"[+-]?\d+")


def _split_row(text: str) -> tuple[str, list[str]]:
    """(name, the integers ending the row); the name may hold spaces (Kinetics labels)."""
    tokens = text.split()
    count = 0
    while count < len(tokens) - 1 and _INTEGER.fullmatch(tokens[-1 - count]):
        count += 1
    numbers = tokens[len(tokens) - count:]
    # Rebuild the name from the text, keeping its inner spacing as listed.
    name = text
    for number in reversed(numbers):
        name = name.rstrip()[: -len(number)]
    return name.rstrip(), numbers


def _refuse(path: Path | str, line: int, text: str, kind: str, numbers: list[str]) -> AnnotationError:
    """Rows of mmaction2's other list formats, which would be misread as a name ending in
    a number: say what the row looks like instead."""
    if kind == "video":
        seen = ("'<video> <label1> <label2> ...' (multi-label: one label per video is read here) "
                "or a rawframes row '<frame_dir> <total_frames> <label>' (use list_kind rawframes, "
                "check --list-kind rawframes)") if len(numbers) == 2 else (
                "'<video> <label1> <label2> ...' (multi-label: one label per video is read here)")
    elif len(numbers) == 3:
        seen = (f"mmaction2's offset form '<frame_dir> <offset> <total_frames> <label>' (offset {numbers[0]}: "
                "frames are read from a folder's first file here, an offset is not supported) or "
                "multi-label '<frame_dir> <total_frames> <label1> <label2>' (one label per video is read here)")
    else:
        seen = ("multi-label '<frame_dir> <total_frames> <label1> <label2> ...' (one label per video is read here)")
    expected = "'<video> <label>'" if kind == "video" else "'<frame_dir> <num_frames> <label>'"
    return AnnotationError(path, f"{len(numbers)} numbers after the name in {text!r}: {seen}; "
                                 f"expected {expected}", line)


def read_list_file(
    path: Path | str, kind: Literal["video", "rawframes"] = "video", classes: list[str] | None = None
) -> Annotations:
    """Read a list file; without ``classes`` the class names are the label numbers.

    mmaction2's other row shapes are read where that is unambiguous and refused with the
    file, the line and the shape seen where not: a rawframes row with an offset column
    (``frame_dir offset total_frames label``) is read when the offset is 0 (a
    ``total_frames`` of 0 would be no video); any other offset, and multi-label rows
    (``frame_dir total_frames label1 label2 ...``, ``video label1 label2 ...``), are
    refused, as this project trains one label per video.
    """
    if kind not in ("video", "rawframes"):
        raise ValueError(f"kind must be 'video' or 'rawframes', got {kind!r}")
    numbers_expected = 1 if kind == "video" else 2
    shape = "'<video> <label>'" if kind == "video" else "'<frame_dir> <num_frames> <label>'"
    records = []
    for line, text in read_lines(path):
        name, numbers = _split_row(text)
        if kind == "rawframes" and len(numbers) == 3 and int(numbers[0]) == 0:
            numbers = numbers[1:]  # the offset form with offset 0: the plain row
        if len(numbers) > numbers_expected:
            raise _refuse(path, line, text, kind, numbers)
        if len(numbers) != numbers_expected or not name:
            raise AnnotationError(path, f"expected {shape}, got {text!r}", line)
        label = parse_int(numbers[-1], path, line, "label")
        if label < 0 or (classes is not None and label >= len(classes)):
            raise AnnotationError(path, f"label {label} outside 0..{len(classes) - 1 if classes else 'N'}", line)
        if kind == "video":
            records.append(VideoRecord(strip_extension(name), name, label))
        else:
            num_frames = parse_int(numbers[0], path, line, "frame count")
            if num_frames < 1:
                raise AnnotationError(path, f"total_frames {num_frames} in {text!r}: no frames", line)
            records.append(VideoRecord(name.rstrip("/"), None, label, num_frames))
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
