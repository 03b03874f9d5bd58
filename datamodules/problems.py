"""The problems ``python -m datamodules check`` reports: one per video, with its reason.

The index keeps only which videos it dropped (it runs before every training, and its
cache must stay small); the check explains each one when it reports: the path looked
for, the decoder's own message (its native log line, captured), what the flow folder
holds. It also looks at the usable videos for what the index cannot judge: a folder
whose files follow another layout than the reader's (``layout_guess``), and flow
counts that disagree with the list's, meta.json's or the decoder's frame counts
(``verify.count_disagreement``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from datamodules.annotations.records import Annotations, VideoRecord, strip_extension
from datamodules.index import VideoIndex, probe_num_frames
from datamodules.layout_guess import layout_mismatch, stored_fields
from datamodules.native_stderr import CapturedStderr, native_reason
from datamodules.verify import count_disagreement, stored_names
from flow.layout import NAMED_LAYOUTS, OURS, FrameLayout
from flow.paths import safe_join
from flow.store import FolderFlowStore

# Kind -> what the printed list calls it; in the table's order.
KINDS = {
    "missing": "missing videos",
    "rejected": "rejected paths (they leave the root)",
    "unreadable": "unreadable videos",
    "incomplete_flow": "missing or incomplete flow",
    "count_mismatch": "frame and flow counts that disagree",
    "other_layout": "flow folders in another layout than the reader's",
    "damaged_flow": "damaged flow (files missing or not whole JPEGs)",
    "undecodable": "videos whose frames do not all decode",
}


@dataclass(frozen=True)
class Problem:
    """One problem video; ``layout`` names the ``--flow-layout`` its files follow, where
    that is why."""

    kind: str
    video_id: str
    reason: str
    layout: str | None = None


def _records_by_id(annotations: Annotations) -> dict[str, VideoRecord]:
    """Each record under its id and under the ids of the files it may be (the index
    names a found video by the file it found)."""
    by_id = {}
    for record in annotations.records:
        by_id.setdefault(record.video_id, record)
        for name in record.candidates():
            by_id.setdefault(strip_extension(name), record)
    return by_id


def _unreadable_reason(path: Path, capture: CapturedStderr | None) -> str:
    if capture is not None:
        capture.new_text()  # drop what other steps wrote before this probe
    try:
        count = probe_num_frames(str(path))
    except Exception as error:  # noqa: BLE001 (decord raises DECORDError, RuntimeError, ...: any is the reason)
        reason = (native_reason(capture.new_text()) if capture is not None else "") or f"{type(error).__name__}: {error}"
        return reason if str(path) in reason else f"{path}: {reason}"
    return f"{path}: the decoder failed while indexing; it reads {count} frames now (rerun the check)"


def _flow_problem(store: FolderFlowStore, video_id: str) -> Problem:
    folder, layout = store.folder(video_id), store.layout
    if not store.exists(video_id):
        return Problem("incomplete_flow", video_id, f"no flow folder or pack: {folder}")
    try:
        store.meta(video_id)
        names = stored_names(store, video_id)
    except (OSError, ValueError) as error:  # a malformed meta.json or pack
        return Problem("incomplete_flow", video_id, str(error))
    first = layout.flow_paths(folder, 0)
    reason = f"{folder}: no meta.json and no {first[0].name}/{first[1].name}"
    mismatch = layout_mismatch(names, layout)
    if mismatch is None:
        return Problem("incomplete_flow", video_id, reason)
    return Problem("incomplete_flow", video_id, f"{reason}; {mismatch.describe()}", mismatch.guess.name)


def dropped_problems(index: VideoIndex, annotations: Annotations, video_root: Path | str,
                     store: FolderFlowStore | None, capture: CapturedStderr | None = None) -> list[Problem]:
    """The videos the index dropped, each with why."""
    by_id = _records_by_id(annotations)
    video_root = Path(video_root).resolve()
    problems = []
    for video_id in index.missing:
        record = by_id.get(video_id)
        if record is None or record.path is None:
            where = store.folder(video_id) if store is not None else video_id
            problems.append(Problem("missing", video_id, f"no frames folder or pack: {where}"))
            continue
        others = len(record.candidates()) - 1
        others = f" (nor any of {others} other places)" if others else ""
        problems.append(Problem("missing", video_id, f"no file {video_root / record.path}{others}"))
    problems += [Problem("rejected", listed, "the path leaves the video or frames root") for listed in index.rejected]
    for video_id in index.unreadable:
        record = by_id.get(video_id)
        paths = [safe_join(video_root, name) for name in record.candidates()] if record is not None else []
        path = next((path for path in paths if path.is_file()), None)
        reason = _unreadable_reason(path, capture) if path is not None else "the file has gone since indexing"
        problems.append(Problem("unreadable", video_id, reason))
    if store is not None:
        problems += [_flow_problem(store, video_id) for video_id in index.incomplete_flow]
    return problems


def usable_problems(index: VideoIndex, annotations: Annotations, store: FolderFlowStore | None) -> list[Problem]:
    """What is wrong with videos the index keeps: counts that disagree, another layout."""
    problems = [Problem("count_mismatch", video_id, f"the decoder reads {decoder} frames, meta.json says {meta}")
                for video_id, decoder, meta in index.frame_count_mismatch]
    if store is None:
        return problems
    by_id = _records_by_id(annotations)
    without_meta = set(index.flow_without_meta)
    for video_id, frames, fields in zip(index.video_ids, index.num_frames, index.num_flows):
        record = by_id.get(video_id)
        listed = record.num_frames if record is not None else None
        if video_id in without_meta:
            try:
                names = stored_names(store, video_id)
            except (OSError, ValueError) as error:  # gone or damaged since the index was built
                problems.append(Problem("incomplete_flow", video_id, str(error)))
                continue
            mismatch = layout_mismatch(names, store.layout)
            if mismatch is not None:
                problems.append(Problem("other_layout", video_id, f"{store.folder(video_id)}: {mismatch.describe()}",
                                        mismatch.guess.name))
                continue  # its counts are the wrong layout's
            whole = stored_fields(names, store.layout)
            if fields and whole < fields:  # the index counts x files: a y partner is gone
                x, y = store.layout.flow_paths(store.folder(video_id), whole)
                problems.append(Problem("damaged_flow", video_id, f"{y} is missing beside {x.name} "
                                        f"({fields} x files, {whole} whole fields)"))
                continue
            # Without meta.json and a list count, the index's frame count is the decoder's.
            reason = count_disagreement(fields or 0, None, listed, None if listed is not None else frames)
        elif listed is not None:
            reason = count_disagreement(fields or 0, store.meta(video_id), listed)
        else:
            continue
        if reason:
            problems.append(Problem("count_mismatch", video_id, f"{store.folder(video_id)}: {reason}"))
    return problems


def report_file(cache_dir: Path | str, name: str, *identity: object) -> Path:
    """Where the check writes a report (``<subset>.tsv``, ``decoder.log``): one file per
    checked dataset (``identity``: its source, roots, layout) and name."""
    digest = hashlib.sha256("\0".join(map(str, identity)).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"check-{digest}.{name}"


def _one_line(text: str) -> str:
    return " ".join(text.split())  # a tab or newline in a reason would break the TSV


def write_problems(problems: list[Problem], path: Path) -> None:
    """Every problem as a TSV row (kind, video, reason); no file when there is none."""
    if not problems:
        path.unlink(missing_ok=True)  # a list from an earlier check would mislead
        return
    rows = [f"{p.kind}\t{_one_line(p.video_id)}\t{_one_line(p.reason)}" for p in problems]
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text("problem\tvideo\tdetail\n" + "\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def format_problems(subset: str, problems: list[Problem], shown: int = 5) -> list[str]:
    """The first ``shown`` problem videos of each kind with their reasons, as lines."""
    lines = []
    for kind, title in KINDS.items():
        of_kind = [p for p in problems if p.kind == kind]
        if not of_kind:
            continue
        lines.append(f"{subset}: {len(of_kind)} {title}")
        lines += [f"  {p.video_id}: {p.reason}" for p in of_kind[:shown]]
        if len(of_kind) > shown:
            lines.append(f"  ... and {len(of_kind) - shown} more")
    return lines


def layout_advice(problems: list[Problem], configured: FrameLayout | None) -> str | None:
    """One line when the folders' names point at another ``--flow-layout``."""
    named = [p.layout for p in problems if p.layout is not None]
    if not named:
        return None
    best = max(set(named), key=named.count)
    reader = next((name for name, value in NAMED_LAYOUTS.items() if value == (configured or OURS)), "a custom layout")
    return (f"flow layout: {named.count(best)} folders follow --flow-layout {best}, "
            f"not the reader's ({reader}); give --flow-layout {best} (a config: flow_layout)")
