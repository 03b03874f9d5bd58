"""Kinetics CSVs: ``label,youtube_id,time_start,time_end,split[,is_cc]``.

Quoted labels ("air drumming") are read by the csv module. Test CSVs may carry no label
(an empty or absent column): such rows get label -1. Clips are named as the common
downloaders name them, ``<youtube_id>_<start:06d>_<end:06d>.mp4`` in integer seconds
(some CSVs write ``time_start`` as ``417.0``), stored either flat or under
``<split>/<label>/`` where the label folder keeps its spaces or has them replaced by
underscores; every such location becomes a candidate and the index takes the one that exists.

Class order comes from a label map (one label per line, e.g. kinetics-i3d's
``label_map_400_i3d.txt``) when given, else from the sorted labels of the CSV. The I3D map
is alphabetical and spelled exactly like the Kinetics-400 CSVs (checked against the val
CSV: 400 of 400 equal); maps that write underscores for spaces or differ in case still
match, through ``_label_key``.
"""

from __future__ import annotations

import csv
import math
import string
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from datamodules.annotations.records import (
    AnnotationError,
    Annotations,
    VideoRecord,
    read_lines,
    strip_extension,
)
from datamodules.annotations.source import (
    AnnotationSource,
    distinct_splits,
    require_path,
    split_reading,
)
from datamodules.synthetic.classes import ClassSpec
from datamodules.synthetic.layouts import Clip, Layout, write_lines

VideoLayout = Literal["split_label", "flat", "auto"]
_REQUIRED = ("youtube_id", "time_start", "time_end")


def _label_key(label: str) -> str:
    return " ".join(label.replace("_", " ").split()).lower()


def _rows(csv_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of every data row, after checking the header."""
    with open(csv_path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        header = reader.fieldnames or []
        absent = [name for name in _REQUIRED if name not in header]
        if absent:
            raise AnnotationError(csv_path, f"header lacks {absent}; got {header}", 1)
        for row in reader:
            if None in row or any(row.get(name) is None for name in _REQUIRED):
                raise AnnotationError(csv_path, f"expected {len(header)} fields, got {row}", reader.line_num)
            yield reader.line_num, row


def kinetics_splits(csv_path: Path | str) -> list[str]:
    """The distinct values of the ``split`` column, in order of appearance ("" when absent)."""
    return list(dict.fromkeys(row.get("split", "").strip() for _, row in _rows(Path(csv_path))))


def _seconds(text: str, csv_path: Path, line: int, what: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise AnnotationError(csv_path, f"{what} {text!r} is not a number", line) from None


def _candidates(name: str, label: str, split: str, layout: VideoLayout) -> tuple[str, ...]:
    nested = []
    if layout != "flat":
        prefix = f"{split}/" if split else ""
        if label:
            nested = [f"{prefix}{label}/{name}", f"{prefix}{label.replace(' ', '_')}/{name}"]
        else:
            nested = [f"{prefix}{name}"]
    flat = [name] if layout != "split_label" else []
    return tuple(dict.fromkeys(nested + flat))


def read_kinetics(
    csv_path: Path | str,
    subset: str | None = None,
    label_map: Path | str | None = None,
    video_layout: VideoLayout = "auto",
) -> Annotations:
    """Read a Kinetics CSV; ``subset`` keeps the rows of one ``split`` value (None: all)."""
    if video_layout not in ("split_label", "flat", "auto"):
        raise ValueError(f"video_layout must be 'split_label', 'flat' or 'auto', got {video_layout!r}")
    csv_path = Path(csv_path)
    rows = list(_rows(csv_path))
    if label_map is not None:
        classes = [text for _, text in read_lines(label_map)]
    else:
        classes = sorted({row["label"].strip() for _, row in rows if row.get("label", "").strip()})
    exact = {name: index for index, name in enumerate(classes)}
    loose = {_label_key(name): index for index, name in enumerate(classes)}
    records = []
    for line, row in rows:
        split = row.get("split", "").strip()
        if subset is not None and split != subset:
            continue
        label_text = (row.get("label") or "").strip()
        label = exact.get(label_text, loose.get(_label_key(label_text), -1)) if label_text else -1
        if label_text and label < 0:
            raise AnnotationError(csv_path, f"label {label_text!r} is not in the label map {label_map}", line)
        start = _seconds(row["time_start"], csv_path, line, "time_start")
        end = _seconds(row["time_end"], csv_path, line, "time_end")
        name = f"{row['youtube_id'].strip()}_{start:06d}_{end:06d}.mp4"
        first, *others = _candidates(name, label_text, split, video_layout)
        records.append(VideoRecord(strip_extension(first), first, label, alternatives=tuple(others)))
    return Annotations(classes, records)


def quote(label: str) -> str:
    """Quote a label the way the real Kinetics CSV does: exactly those with a space."""
    return f'"{label}"' if " " in label else label


class KineticsLayout(Layout):
    """The synthetic Kinetics: ``kinetics/<split>/<label_dir>/<youtube_id>_<start:06d>_<end:06d>.mp4``
    with split ``train`` or ``val`` and ``label_dir`` the label with spaces replaced by
    underscores (mmaction2's convention); ``kinetics/annotations/{train,val}.csv``
    (``label,youtube_id,time_start,time_end,split,is_cc``, labels with spaces quoted as in
    the real CSV) and ``label_map.txt`` (one label per line, class-index order); classes in
    lower case with spaces (``move left``).

    Times are nominal 10 s windows as in the real CSV; the clip itself lasts
    ``num_frames / fps``.
    """

    name, fourcc, default_size, min_videos = "kinetics", "mp4v", (340, 256), 2
    video_dir, annotation_subdir = "kinetics", "kinetics/annotations"
    youtube_alphabet = string.ascii_letters + string.digits + "-_"

    def class_name(self, words: tuple[str, ...]) -> str:
        return " ".join(words)

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        val = max(1, math.ceil(0.25 * videos_per_class))
        clips = []
        for index, spec in enumerate(classes):
            rng = spec.rng(seed, 3)
            for video in range(videos_per_class):
                youtube_id = "".join(rng.choice(list(self.youtube_alphabet), 11))
                start = int(rng.integers(0, 290))
                split = "val" if video < val else "train"
                path = f"{split}/{spec.name.replace(' ', '_')}/{youtube_id}_{start:06d}_{start + 10:06d}.mp4"
                clips.append(Clip(path, index, video, (split,)))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        write_lines(folder / "label_map.txt", [spec.name for spec in classes], "\n")
        for split in ("train", "val"):
            rows = []
            for clip in clips:
                if clip.splits[0] == split:
                    label = classes[clip.class_index].name
                    youtube_id, start, end = Path(clip.path).stem.rsplit("_", 2)
                    rows.append((label, youtube_id, int(start), int(end)))
            lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
            lines += [f"{quote(label)},{yid},{start},{end},{split},0" for label, yid, start, end in sorted(rows)]
            write_lines(folder / f"{split}.csv", lines, "\n")

    def source_settings(self, annotation_dir: Path) -> dict[str, str]:
        return {"train_csv": str(annotation_dir / "train.csv"), "val_csv": str(annotation_dir / "val.csv"),
                "label_map": str(annotation_dir / "label_map.txt")}


class Kinetics(AnnotationSource):
    """Kinetics from its CSVs; validates and tests on ``val_csv`` unless ``test_csv`` is given.

    Args:
        train_csv: the train CSV (``label,youtube_id,time_start,time_end,split``).
        val_csv: the validation CSV.
        test_csv: a labelled test CSV; None: the validation CSV.
        label_map: class names one per line in label order (e.g. kinetics-i3d's
            label_map_400_i3d.txt); None: the sorted labels of train_csv.
        video_layout: clips under ``<split>/<label>/`` (split_label), flat, or auto (either).
    """

    synthetic = KineticsLayout()

    def __init__(
        self,
        train_csv: str,
        val_csv: str,
        test_csv: str | None = None,
        label_map: str | None = None,
        video_layout: VideoLayout = "auto",
    ):
        for setting, path in (("train_csv", train_csv), ("val_csv", val_csv), ("test_csv", test_csv),
                              ("label_map", label_map)):
            require_path(setting, path)
        self.csvs = {"train": train_csv, "val": val_csv, "test": test_csv or val_csv}
        self.label_map, self.video_layout = label_map, video_layout
        self._classes: list[str] | None = None

    def classes(self) -> list[str]:
        if self._classes is None:
            if self.label_map is not None:
                self._classes = [text for _, text in read_lines(self.label_map)]
            else:
                self._classes = read_kinetics(self.csvs["train"]).classes
        return self._classes

    def splits(self) -> tuple[str, ...]:
        return distinct_splits(self.csvs)

    def stage_split(self, stage: str) -> str:
        return split_reading(self.csvs, stage)

    def records(self, split: str) -> Annotations:
        if split not in self.csvs:
            raise self._unknown(split)
        annotations = read_kinetics(self.csvs[split], label_map=self.label_map, video_layout=self.video_layout)
        classes = self.classes()
        if annotations.classes == classes:
            return annotations
        # Without a label map each CSV's sorted labels would number classes on its own:
        # relabel by the train CSV's classes so that every split agrees.
        labels = {name: label for label, name in enumerate(classes)}
        unknown = sorted(set(annotations.classes) - set(labels))
        if unknown:
            raise ValueError(f"{self.csvs[split]} has classes absent from {self.csvs['train']}: {unknown[:5]}")
        records = [replace(r, label=labels[annotations.classes[r.label]]) if r.label >= 0 else r
                   for r in annotations.records]
        return Annotations(classes, records)
