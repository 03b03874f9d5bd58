"""``python -m datamodules check``: the first command after downloading a dataset.

Reads the annotation files, builds the index of every subset (train/test, or each split
of a Kinetics CSV) and prints one row per subset: listed and usable videos, classes,
missing or unreadable videos, rejected paths, missing or incomplete flow, and frame
counts where the decoder and meta.json disagree. The lists of problem videos are written
next to the cached index.
"""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path
from typing import TextIO

import yaml

from datamodules.annotations import (
    Annotations,
    kinetics_splits,
    read_hmdb51,
    read_kinetics,
    read_list_file,
    read_ucf101,
)
from datamodules.annotations.records import read_lines
from datamodules.index import VideoIndex, build_index
from flow.layout import NAMED_LAYOUTS

DATASETS = ("ucf101", "hmdb51", "kinetics", "list")
EXIT_BAD_ANNOTATIONS = 2


def read_subsets(
    dataset: str,
    annotations: Path | str,
    split: int = 1,
    label_map: Path | str | None = None,
    list_kind: str = "video",
) -> dict[str, Annotations]:
    """The annotations of every subset a dataset's files define, by subset name."""
    annotations = Path(annotations)
    if dataset in ("ucf101", "hmdb51"):
        reader = read_ucf101 if dataset == "ucf101" else read_hmdb51
        return {subset: reader(annotations, split, subset) for subset in ("train", "test")}
    if dataset == "kinetics":
        files = sorted(annotations.glob("*.csv")) if annotations.is_dir() else [annotations]
        if not files:
            raise FileNotFoundError(f"no *.csv file in {annotations}")
        subsets = {}
        for file in files:
            for split_name in kinetics_splits(file):
                name = split_name or file.stem
                name = f"{file.stem}:{name}" if name in subsets else name  # two CSVs of one split
                subsets[name] = read_kinetics(file, split_name or None, label_map)
        return subsets
    if dataset == "list":
        classes = [text for _, text in read_lines(label_map)] if label_map is not None else None
        return {annotations.stem: read_list_file(annotations, list_kind, classes)}
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


# "flow missing" counts missing or incomplete flow folders; "flow no meta" the folders
# trusted by their file count; "frames != meta" decoder counts that disagree with meta.json.
COLUMNS = ("subset", "listed", "usable", "classes", "missing", "rejected", "unreadable",
           "flow missing", "flow no meta", "frames != meta")


def _row(name: str, annotations: Annotations, index: VideoIndex) -> list[str]:
    present = len({label for label in index.labels if label >= 0})
    counts = (index.missing, index.rejected, index.unreadable, index.incomplete_flow,
              index.flow_without_meta, index.frame_count_mismatch)
    return [name, str(index.listed), str(len(index)), f"{present}/{len(annotations.classes)}",
            *(str(len(items)) for items in counts)]


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows)]
    lines = [[cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))]
             for row in [list(COLUMNS), *rows]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def check(
    dataset: str,
    annotations: Path | str,
    video_root: Path | str,
    frames_root: Path | str | None = None,
    split: int = 1,
    *,
    label_map: Path | str | None = None,
    list_kind: str = "video",
    flow_layout: str = "ours",
    cache_dir: Path | str | None = None,
    out: TextIO | None = None,
) -> int:
    """Check a dataset and print the table; returns the exit status (2: unreadable annotations)."""
    out = out or sys.stdout  # looked up per call, so redirected output (and capture) works
    try:
        subsets = read_subsets(dataset, annotations, split, label_map, list_kind)
    except (OSError, ValueError, csv.Error) as error:
        print(f"error: cannot read the annotations: {error}", file=sys.stderr)
        return EXIT_BAD_ANNOTATIONS
    rows, problem_files = [], []
    for name, subset in subsets.items():
        with warnings.catch_warnings():
            # The table says what the index's warning would; the list files are named below.
            warnings.simplefilter("ignore", UserWarning)
            has_frames = frames_root is not None
            index = build_index(subset, video_root, frames_root, needs_flow=has_frames, cache_dir=cache_dir,
                                verify_frames=has_frames, layout=NAMED_LAYOUTS[flow_layout])
        rows.append(_row(name, subset, index))
        if index.problems_file:
            problem_files.append(f"  {name}: {index.problems_file}")
    print(f"{dataset}: annotations {annotations}, videos {video_root}"
          + (f", frames {frames_root}" if frames_root is not None else ""), file=out)
    print(format_table(rows), file=out)
    if problem_files:
        print("problem lists:", *problem_files, sep="\n", file=out)
    return 0


# DataModule class -> (dataset kind, the init arg holding its annotations).
CONFIG_DATAMODULES = {
    "UCF101DataModule": ("ucf101", "annotation_dir"),
    "HMDB51DataModule": ("hmdb51", "split_dir"),
    "KineticsDataModule": ("kinetics", "train_csv"),
    "ListDataModule": ("list", "train_list"),
}


def checks_from_config(path: Path | str) -> list[dict]:
    """The ``check`` arguments for every DataModule of a training config's ``data:`` section
    (a MultiDataModule holds several), so ``check --config X.yaml`` checks what ``fit`` reads."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    data = config.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{path}: no data.class_path to check")
    modules = data.get("init_args", {}).get("datamodules", [data])
    checks = []
    for module in modules:
        name = module["class_path"].rsplit(".", 1)[-1]
        if name not in CONFIG_DATAMODULES:
            raise ValueError(f"{path}: cannot check {module['class_path']}; known: {', '.join(CONFIG_DATAMODULES)}")
        dataset, annotations_key = CONFIG_DATAMODULES[name]
        args = module.get("init_args", {})
        annotations = args[annotations_key]
        if dataset == "kinetics":  # check reads every split of the CSVs in the folder
            annotations = str(Path(annotations).parent)
        checks.append({"dataset": dataset, "annotations": annotations, "video_root": args["video_root"],
                       "frames_root": args.get("frames_root"), "split": args.get("split", 1),
                       "label_map": args.get("label_map") or args.get("class_names"),
                       "list_kind": args.get("list_kind", "video"), "flow_layout": args.get("flow_layout", "ours"),
                       "cache_dir": args.get("cache_dir")})
    return checks

