"""Converting between flow folders (ours, denseflow's, mmaction2's) and packs, both ways.

Files go across byte for byte: a folder packed then unpacked holds the same JPEGs. Both
directions are resumable (a complete output is skipped) and write their output so that
a crash never leaves one that readers trust: a pack under its final name, or a folder's
``meta.json``, appears last.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from flow.layout import OURS, FrameLayout
from flow.meta import META_FILE, read_meta
from flow.ownership import TMP_MARK
from flow.packed import (
    PACK_SUFFIX,
    PackedFlowStore,
    _check_member_name,
    pack_path,
    write_pack,
)
from flow.paths import safe_join
from flow.pool import Crashed, pool_outcomes


def pack_video(folder: Path | str, pack: Path | str, layout: FrameLayout | None = None) -> bool:
    """Pack ``folder``'s frame files (and meta.json, last) into ``pack``; False when it exists.

    The files packed are those the folder's layout names (meta.json's, else ``layout``);
    a folder holding none of them is refused rather than packed empty. A folder of our
    layout without meta.json is refused too: ours always end with one, so it is a killed
    extraction's leftover (older versions wrote in place), which packed would look complete.
    """
    folder, pack = Path(folder), Path(pack)
    if pack.is_file():
        return False
    meta = read_meta(folder)
    if meta is None and (layout or OURS) == OURS:
        raise ValueError(f"{folder}: flow files but no meta.json: an unfinished extraction (rerun flow extract "
                         f"to redo it), or another tool's folder (name its layout: --flow-layout)")
    owner = meta.frame_layout() if meta else layout
    names = sorted(name for name in os.listdir(folder) if name != META_FILE and owner.owns(name))
    if not names:
        raise ValueError(f"{folder}: no frame files of its layout to pack")
    meta_json = (folder / META_FILE).read_bytes() if meta else None
    write_pack(pack, ((name, (folder / name).read_bytes()) for name in names), meta_json)
    return True


def unpack_video(pack: Path | str, folder: Path | str) -> bool:
    """Unpack ``pack`` into ``folder``, meta.json last; False when it already holds every member."""
    pack, folder = Path(pack), Path(folder)
    store = PackedFlowStore(pack.parent)
    video_id = pack.name[: -len(PACK_SUFFIX)]
    members = store._index(video_id).members
    for name in members:
        _check_member_name(name, pack)
    if all(_has_size(folder / name, size) for name, (_, size, _) in members.items()):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for name in members:
        if name != META_FILE:
            _write_atomic(safe_join(folder, name), store.member(video_id, name))
    if META_FILE in members:
        _write_atomic(folder / META_FILE, store.member(video_id, META_FILE))
    return True


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-file leaves a .tmp, never a truncated JPEG under its final name.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def find_folders(root: Path | str) -> list[str]:
    """Video ids (relative paths, ``/``-separated) of the folders under ``root`` holding JPEGs
    or a meta.json; a writer's temporary folders (``<id>.tmp-<host>-<pid>``) are not videos."""
    root = Path(root)
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [name for name in dirnames if TMP_MARK not in name]
        if dirpath != str(root) and any(name == META_FILE or name.endswith(".jpg") for name in files):
            found.append(Path(dirpath).relative_to(root).as_posix())
    return sorted(found)


def find_packs(root: Path | str) -> list[str]:
    """Video ids of the complete packs under ``root`` (``.zip.tmp`` files are being written)."""
    root = Path(root)
    return sorted(path.relative_to(root).as_posix()[: -len(PACK_SUFFIX)] for path in root.rglob("*" + PACK_SUFFIX))


@dataclass(frozen=True)
class _Job:
    source: str
    target: str


@dataclass
class ConvertSummary:
    converted: int = 0
    skipped: int = 0
    failed: int = 0

    def format(self) -> str:
        return f"{self.converted} converted, {self.skipped} already complete, {self.failed} failed"


@dataclass(frozen=True)
class _Converter:
    """Runs one conversion in a worker; errors come back as text so the run goes on.

    Being picklable, it is also the pool's ``make_worker`` (called, it returns itself).
    """

    pack: bool
    layout: FrameLayout | None = None

    def __call__(self, job: _Job | None = None) -> bool | str | _Converter:
        if job is None:
            return self
        try:
            if self.pack:
                return pack_video(job.source, job.target, self.layout)
            return unpack_video(job.source, job.target)
        except (OSError, ValueError) as error:
            return str(error)


def convert_many(direction: str, source_root: Path | str, target_root: Path | str, workers: int = 1,
                 layout: FrameLayout | None = None, video_ids: Sequence[str] | None = None,
                 report: Callable[[str], None] = print) -> ConvertSummary:
    """``direction`` "pack" (folders -> packs) or "unpack" (packs -> folders), every video
    under ``source_root`` (or ``video_ids``), on ``workers`` processes."""
    if direction == "pack":
        ids = video_ids if video_ids is not None else find_folders(source_root)
        jobs = [_Job(str(safe_join(source_root, i)), str(pack_path(target_root, i))) for i in ids]
    elif direction == "unpack":
        ids = video_ids if video_ids is not None else find_packs(source_root)
        jobs = [_Job(str(pack_path(source_root, i)), str(safe_join(target_root, i))) for i in ids]
    else:
        raise ValueError(f"direction must be 'pack' or 'unpack', got {direction!r}")
    summary = ConvertSummary()
    for job, outcome in _outcomes(jobs, _Converter(direction == "pack", layout), workers):
        if isinstance(outcome, (Crashed, str)):
            summary.failed += 1
            report(f"failed: {job.source}: {outcome.message if isinstance(outcome, Crashed) else outcome}")
        elif outcome:
            summary.converted += 1
        else:
            summary.skipped += 1
    return summary


def _outcomes(jobs: list[_Job], converter: _Converter, workers: int) -> Iterator[tuple[_Job, bool | str | Crashed]]:
    if workers <= 1:  # in this process: no pool to start for a few videos
        return ((job, converter(job)) for job in jobs)
    return pool_outcomes(jobs, converter, workers)
