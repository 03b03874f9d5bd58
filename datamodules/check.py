"""``python -m datamodules check``: the first command after downloading a dataset.

Reads the annotation files through the dataset's ``AnnotationSource``, built as a training
config builds it: ``--config`` takes the DataModule a config's ``data:`` section holds
(command-line overrides included), ``--annotations CLASS --annotations.KEY VALUE`` the
source alone, as a config's ``annotations:`` block would give it. Builds the index of
every subset the files define (train/test, Kinetics' CSVs, SSv2's JSON files) and prints
one row per subset: listed and usable videos, classes, missing or unreadable videos,
rejected paths, missing or incomplete flow, counts that disagree (decoder, list,
meta.json), flow folders following another layout than the reader's, with ``--verify``
flow whose files do not open, and with ``--decode`` videos whose frames do not all decode
(``datamodules/full_decode.py``). Below the table, the first problem videos of each kind
with their reasons; every one is written to a list file beside the cached index. Exit
status: 0 clean, 1 problems found, 2 unreadable annotations (or a ``--decode`` decoder
that cannot run here).
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TextIO

import yaml

from datamodules.annotations import Annotations, AnnotationSource
from datamodules.decoding import FrameReader, create_reader
from datamodules.full_decode import undecodable_many
from datamodules.index import VideoIndex, build_index, default_cache_dir
from datamodules.native_stderr import CapturedStderr, native_stderr_captured
from datamodules.problems import (
    Problem,
    dropped_problems,
    format_problems,
    layout_advice,
    report_file,
    usable_problems,
    write_problems,
)
from datamodules.verify import verify_many
from flow.layout import NAMED_LAYOUTS, FrameLayout
from flow.packed import open_flow_store

EXIT_PROBLEMS = 1
EXIT_BAD_ANNOTATIONS = 2


def read_subsets(source: AnnotationSource) -> dict[str, Annotations]:
    """The annotations of every subset the source's files define, by subset name."""
    return {split: source.records(split) for split in source.splits()}


# "flow missing" counts missing or incomplete flow folders; "flow no meta" the folders
# trusted by their file count (not a problem in itself: other tools write no meta.json);
# "counts differ" frame and flow counts that disagree (decoder, list, meta.json); "other
# layout" folders whose files follow another --flow-layout; "flow damaged" files that are
# missing or do not open ("-": not looked for; without --verify only a folder's missing
# flow_y partners are seen); "undecodable" videos a frame of which does not decode ("-":
# not looked for, --decode). "usable" leaves the damaged and the undecodable out.
COLUMNS = ("subset", "listed", "usable", "classes", "missing", "rejected", "unreadable",
           "flow missing", "flow no meta", "counts differ", "other layout", "flow damaged", "undecodable")
SHOWN = 5  # problem videos printed per kind and subset; the list file has them all


def _row(name: str, annotations: Annotations, index: VideoIndex, problems: list[Problem], verified: bool,
         decoded: bool) -> list[str]:
    present = len({label for label in index.labels if label >= 0})
    count = Counter(problem.kind for problem in problems)
    usable = len(index) - len({p.video_id for p in problems if p.kind in ("damaged_flow", "undecodable")})
    cells = [count["missing"], count["rejected"], count["unreadable"], count["incomplete_flow"],
             len(index.flow_without_meta), count["count_mismatch"], count["other_layout"]]
    looked = [(count["damaged_flow"], verified), (count["undecodable"], decoded)]
    return [name, str(index.listed), str(usable), f"{present}/{len(annotations.classes)}",
            *(str(cell) for cell in cells), *(str(n) if ran or n else "-" for n, ran in looked)]


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows)]
    lines = [[cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))]
             for row in [list(COLUMNS), *rows]]
    return "\n".join("  ".join(line).rstrip() for line in lines)


def _subset_problems(subset: Annotations, video_root: Path | str, frames: Path | None, layout: FrameLayout,
                     cache: Path, verify: bool, reader: FrameReader | None,
                     capture: CapturedStderr) -> tuple[VideoIndex, list[Problem]]:
    """One subset's index (as training builds it) and every problem found in it."""
    with warnings.catch_warnings():
        # The table says what the index's warning would; the list files are named below.
        warnings.simplefilter("ignore", UserWarning)
        index = build_index(subset, video_root, frames, needs_flow=frames is not None, cache_dir=cache,
                            verify_frames=frames is not None, layout=layout)
    store = open_flow_store(frames, layout) if frames is not None else None
    problems = dropped_problems(index, subset, video_root, store, capture) + usable_problems(index, subset, store)
    if verify and frames is not None:
        seen = {problem.video_id for problem in problems if problem.kind == "damaged_flow"}
        damaged = verify_many(frames, layout, [video_id for video_id in index.video_ids if video_id not in seen])
        problems += [Problem("damaged_flow", video_id, reason) for video_id, reason in damaged.items()]
    if reader is not None:
        paths = {video_id: path for video_id, path in zip(index.video_ids, index.paths) if path is not None}
        failed = undecodable_many(reader, paths)
        problems += [Problem("undecodable", video_id, f"{paths[video_id]}: {reason}")
                     for video_id, reason in failed.items()]
    return index, problems


def check_source(
    source: AnnotationSource,
    video_root: Path | str,
    frames_root: Path | str | None = None,
    *,
    flow_layout: str = "ours",
    cache_dir: Path | str | None = None,
    name: str | None = None,
    verify: bool = False,
    decoder: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Check every split of ``source`` against the roots, print the table and the first
    problem videos of each kind with their reasons; returns the exit status (0: clean,
    1: problems found, 2: unreadable annotations or a decoder that cannot run here). ``verify`` opens
    every flow file; ``decoder`` (a data setting ``decoder``: auto, decord, torchcodec)
    decodes every frame of every video with that reader."""
    out = out or sys.stdout  # looked up per call, so redirected output (and capture) works
    try:
        subsets = read_subsets(source)
    except (OSError, ValueError, KeyError, csv.Error) as error:
        print(f"error: cannot read the annotations: {error}", file=sys.stderr)
        return EXIT_BAD_ANNOTATIONS
    title = name or type(source).__name__
    layout = NAMED_LAYOUTS[flow_layout]
    frames = Path(frames_root).resolve() if frames_root is not None else None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(video_root, frames)
    identity = (title, repr(sorted(vars(source).items())), Path(video_root).resolve(), frames, flow_layout)
    verified = verify and frames is not None
    if decoder == "rawframes":  # its RGB frames are JPEG files: --verify opens them
        print("--decode: decoder rawframes reads JPEG frames, which --verify opens", file=out)
        decoder = None
    try:
        reader = create_reader(decoder) if decoder is not None else None
    except (ImportError, RuntimeError, ValueError) as error:  # torchcodec absent, no CUDA, a typo
        print(f"error: --decode: decoder {decoder!r}: {error}", file=sys.stderr)
        return EXIT_BAD_ANNOTATIONS
    rows, details, lists, everything = [], [], [], []
    videos = 0  # video files --decode decoded
    # Decoders print their own log lines on fd 2 for every broken video: kept off the
    # terminal, the reasons go into the lists instead.
    with native_stderr_captured() as capture:
        for subset_name, subset in subsets.items():
            index, problems = _subset_problems(subset, video_root, frames, layout, cache, verified, reader, capture)
            rows.append(_row(subset_name, subset, index, problems, verified, reader is not None))
            videos += sum(path is not None for path in index.paths)
            path = report_file(cache, f"{subset_name}.tsv", *identity)
            write_problems(problems, path)
            if problems:
                details += format_problems(subset_name, problems, SHOWN)
                lists.append(f"  {subset_name}: {path}")
            everything += problems
    log = report_file(cache, "decoder.log", *identity)
    if capture.text.strip():
        log.write_text(capture.text, encoding="utf-8")
    else:
        log.unlink(missing_ok=True)  # an earlier check's log would mislead
    print(f"{title}, videos {video_root}" + (f", frames {frames_root}" if frames_root is not None else ""), file=out)
    print(format_table(rows), file=out)
    if reader is not None and not videos:
        print("--decode: no video file to decode (none is usable, or the data reads flow or frames only)", file=out)
    if verify and frames is None:
        print("--verify: no frames root, no flow to open", file=out)
    if not everything:
        return 0
    advice = layout_advice(everything, layout)
    print(*details, *([advice] if advice else []), "problem lists (every video, with its reason):", *lists,
          sep="\n", file=out)
    if log.exists():
        print(f"decoder messages (kept off the terminal): {log}", file=out)
    print(f"{len(everything)} problem{'s' if len(everything) != 1 else ''} found: exit status {EXIT_PROBLEMS}",
          file=out)
    return EXIT_PROBLEMS


def check_datamodule(datamodule: object, out: TextIO | None = None, verify: bool = False,
                     decode: bool = False) -> int:
    """Check what a DataModule reads, with its own source, roots, layout, cache and decoder
    (a ``MultiDataModule``: each of its DataModules); returns the worst exit status."""
    modules = getattr(datamodule, "datamodules", [datamodule])
    statuses = []
    for dm in modules:
        roots = dm.roots
        decoder = dm.loader_settings.decoder if decode else None
        statuses.append(check_source(dm.annotations, roots.video_root, roots.frames_root,
                                     flow_layout=roots.flow_layout, cache_dir=roots.cache_dir, verify=verify,
                                     decoder=decoder, out=out))
    return max(statuses)


def _parsed(key: str, base: type, value: str, overrides: list[str]) -> object:
    """The ``base`` subclass object that ``--KEY VALUE`` and its ``--KEY.*`` overrides
    build, parsed and instantiated as ``cli.py`` does (jsonargparse)."""
    from jsonargparse import (
        ArgumentParser,  # the CLI's parser; only this command needs it
    )

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, key, required=True)
    parsed = parser.parse_args([f"--{key}", value, *overrides])
    # ``instantiate`` from jsonargparse 4.49 on; ``instantiate_classes`` before (deprecated since).
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return getattr(instantiate(parsed), key)


def datamodule_from_config(path: Path | str, overrides: list[str] = ()) -> object:
    """The DataModule a training config's ``data:`` section builds, with command-line
    overrides (``--data.init_args.roots.video_root DIR``), parsed as ``cli.py`` parses it."""
    from pytorch_lightning import LightningDataModule

    config = yaml.safe_load(Path(path).read_text()) or {}
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict) or "class_path" not in data:
        raise ValueError(f"{path}: no data.class_path to check")
    return _parsed("data", LightningDataModule, json.dumps(data), list(overrides))


def source_from_flags(source: str, overrides: list[str] = ()) -> AnnotationSource:
    """The ``AnnotationSource`` that ``--annotations CLASS --annotations.KEY VALUE ...``
    names: the class (``UCF101``, ``datamodules.annotations.Kinetics``, or a JSON block)
    built with the settings a config's ``annotations:`` block takes."""
    import datamodules.annotations  # noqa: F401 (the readers, so their short names resolve)

    return _parsed("annotations", AnnotationSource, source, list(overrides))
