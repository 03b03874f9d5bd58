"""``python -m datamodules check``: the first command after downloading a dataset.

Reads the annotation files through the dataset's ``AnnotationSource`` (``--dataset``
names one of ``datamodules.annotations.DATASETS``; ``--config`` takes the very source a
training config's DataModule holds, command-line overrides included), builds the index
of every subset the files define (train/test, Kinetics' CSVs, SSv2's JSON files) and
prints one row per subset: listed and usable videos, classes, missing or unreadable
videos, rejected paths, missing or incomplete flow, and frame counts where the decoder
and meta.json disagree. The lists of problem videos are written next to the cached index.
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path
from typing import TextIO

import yaml

from datamodules.annotations import DATASETS, Annotations, AnnotationSource
from datamodules.index import VideoIndex, build_index
from flow.layout import NAMED_LAYOUTS

EXIT_BAD_ANNOTATIONS = 2


def read_subsets(source: AnnotationSource) -> dict[str, Annotations]:
    """The annotations of every subset the source's files define, by subset name."""
    return {split: source.records(split) for split in source.splits()}


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
    """Check a dataset named as on the command line (``DATASETS``) and print the table;
    returns the exit status (2: unreadable annotations)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    try:
        source = DATASETS[dataset].from_path(annotations, split=split, label_map=label_map, list_kind=list_kind)
    except (OSError, ValueError) as error:
        print(f"error: cannot read the annotations: {error}", file=sys.stderr)
        return EXIT_BAD_ANNOTATIONS
    return check_source(source, video_root, frames_root, flow_layout=flow_layout, cache_dir=cache_dir,
                        name=f"{dataset}: annotations {annotations}", out=out)


def check_source(
    source: AnnotationSource,
    video_root: Path | str,
    frames_root: Path | str | None = None,
    *,
    flow_layout: str = "ours",
    cache_dir: Path | str | None = None,
    name: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Check every split of ``source`` against the roots and print the table; returns the
    exit status (2: unreadable annotations)."""
    out = out or sys.stdout  # looked up per call, so redirected output (and capture) works
    try:
        subsets = read_subsets(source)
    except (OSError, ValueError, KeyError, csv.Error) as error:
        print(f"error: cannot read the annotations: {error}", file=sys.stderr)
        return EXIT_BAD_ANNOTATIONS
    rows, problem_files = [], []
    for subset_name, subset in subsets.items():
        with warnings.catch_warnings():
            # The table says what the index's warning would; the list files are named below.
            warnings.simplefilter("ignore", UserWarning)
            has_frames = frames_root is not None
            index = build_index(subset, video_root, frames_root, needs_flow=has_frames, cache_dir=cache_dir,
                                verify_frames=has_frames, layout=NAMED_LAYOUTS[flow_layout])
        rows.append(_row(subset_name, subset, index))
        if index.problems_file:
            problem_files.append(f"  {subset_name}: {index.problems_file}")
    print(f"{name or type(source).__name__}, videos {video_root}"
          + (f", frames {frames_root}" if frames_root is not None else ""), file=out)
    print(format_table(rows), file=out)
    if problem_files:
        print("problem lists:", *problem_files, sep="\n", file=out)
    return 0


def check_datamodule(datamodule: object, out: TextIO | None = None) -> int:
    """Check what a DataModule reads, with its own source, roots, layout and cache (a
    ``MultiDataModule``: each of its DataModules); returns the worst exit status."""
    modules = getattr(datamodule, "datamodules", [datamodule])
    statuses = []
    for dm in modules:
        layout = next(name for name, value in NAMED_LAYOUTS.items() if value == dm.flow_layout)
        statuses.append(check_source(dm.annotations, dm.video_root, dm.frames_root, flow_layout=layout,
                                     cache_dir=dm.cache_dir, out=out))
    return max(statuses)


def datamodule_from_config(path: Path | str, overrides: list[str] = ()) -> object:
    """The DataModule a training config's ``data:`` section builds, with command-line
    overrides (``--data.init_args.video_root DIR``), parsed as ``cli.py`` parses it."""
    from jsonargparse import (
        ArgumentParser,  # the CLI's parser; only this command needs it
    )
    from pytorch_lightning import LightningDataModule

    config = yaml.safe_load(Path(path).read_text()) or {}
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{path}: no data.class_path to check")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    parsed = parser.parse_args(["--data", json.dumps(data), *overrides])
    # ``instantiate`` from jsonargparse 4.49 on; ``instantiate_classes`` before (deprecated since).
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(parsed).data
