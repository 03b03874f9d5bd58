"""Whether a video's stored flow is what its description says: ``check --verify``.

The index trusts ``meta.json`` (written last, it means "complete") and, without one,
counts ``flow_x`` names. Neither notices a JPEG truncated by a copy, a ``flow_y`` file
deleted by hand, or a folder a third-party tool left half-written. ``verify_video``
opens every file the video's description promises (forward fields, backward fields and
RGB frames where meta.json says so; without meta.json every x file counted and its y
partner) and decodes it: present, a whole JPEG (ends in the EOI marker: a JPEG cut short
after its last scan still decodes, grey-filled), of one size (meta.json's where there is
one), no fields beyond meta.json's count. A pack is opened through its central
directory and every member read, which checks its CRC.

``count_disagreement`` (run by ``check`` with or without ``--verify``: it costs nothing) compares the
number of fields with the frame counts that describe the video: a rawframe list's
``total_frames`` (mmaction2 writes the frame count, or for flow lists the field count:
either is accepted), meta.json's, and the decoder's for folders without meta.json.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from datamodules.layout_guess import stored_fields
from flow.codec import decode_jpeg
from flow.layout import FrameLayout
from flow.meta import FlowMeta
from flow.packed import PackedFlowStore, open_flow_store, pack_path
from flow.store import FolderFlowStore

_JPEG_END = b"\xff\xd9"
_REASONS_PER_VIDEO = 3


def stored_names(store: FolderFlowStore, video_id: str) -> set[str]:
    """The file names of a video's folder, or the member names of its pack."""
    if isinstance(store, PackedFlowStore) and store.is_packed(video_id):
        path = pack_path(store.root, video_id)
        try:
            with zipfile.ZipFile(path) as archive:
                return set(archive.namelist())
        except (zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{path}: not a readable zip ({error})") from None
    return set(os.listdir(store.folder(video_id)))


def count_disagreement(fields: int, meta: FlowMeta | None, listed_frames: int | None = None,
                       decoder_frames: int | None = None) -> str | None:
    """Why ``fields`` stored flow fields disagree with the counts describing the video; None
    when they agree. With meta.json its counts are the folder's (``fields`` is its
    num_flows); without, ``fields`` was counted and a decoder count may judge it."""
    if meta is not None:
        if listed_frames is not None and listed_frames not in (meta.num_frames, meta.num_flows):
            return (f"the list says {listed_frames} frames; meta.json says {meta.num_frames} frames, "
                    f"{meta.num_flows} fields")
        return None
    for count, source in ((listed_frames, "the list says"), (decoder_frames, "the decoder reads")):
        if count is not None and fields not in (count - 1, count):
            return (f"{source} {count} frames; the folder holds {fields} fields "
                    f"(expected {count - 1}, or {count} for a list of fields)")
    return None


def _planned(meta: FlowMeta | None, layout: FrameLayout, names: set[str]) -> Iterator[tuple[str, bool]]:
    """(file name, colour) of every file the description promises."""
    def numbered(template: str, count: int) -> Iterator[str]:
        return (template.format(k + layout.start_index) for k in range(count))

    if meta is not None:
        forward = meta.num_flows
    else:  # every counted x file promises its y partner (a deleted flow_y is found)
        forward = max(stored_fields(names, layout), _consecutive(names, layout.flow_x, layout.start_index))
    for x, y in zip(numbered(layout.flow_x, forward), numbered(layout.flow_y, forward)):
        yield x, False
        yield y, False
    if meta is not None and meta.backward:
        for x, y in zip(numbered(layout.backward_x, forward), numbered(layout.backward_y, forward)):
            yield x, False
            yield y, False
    if meta is not None and meta.rgb:
        yield from ((name, True) for name in numbered(layout.rgb, meta.num_frames))


def _consecutive(names: set[str], template: str, start: int) -> int:
    count = 0
    while template.format(start + count) in names:
        count += 1
    return count


def _read(store: FolderFlowStore, video_id: str, name: str) -> bytes:
    if isinstance(store, PackedFlowStore) and store.is_packed(video_id):
        return store.member(video_id, name)  # CRC-checked
    return (store.folder(video_id) / name).read_bytes()


def verify_video(store: FolderFlowStore, video_id: str) -> str | None:
    """Open every file of the video's stored flow; the reasons it is damaged ("; "-joined,
    the first few), or None when whole."""
    try:
        names = stored_names(store, video_id)
        meta = store.meta(video_id)
    except (OSError, ValueError) as error:
        return str(error)
    layout = store.layout_of(video_id)
    reasons: list[str] = []
    size = (meta.height, meta.width) if meta is not None else None
    planned = list(_planned(meta, layout, names))
    missing = [name for name, _ in planned if name not in names]
    absent = set(missing)
    if missing:
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        promise = f"meta.json's {meta.num_flows} fields" if meta is not None else "the x files counted"
        reasons.append(f"{len(missing)} of the {len(planned)} files {promise} need are missing: {listed}")
    for name, colour in planned:
        if name in absent:
            continue
        try:
            data = _read(store, video_id, name)
            if not data.rstrip(b"\0\r\n ").endswith(_JPEG_END):
                raise ValueError(f"truncated JPEG ({len(data)} bytes, no end marker)")
            image = decode_jpeg(np.frombuffer(data, dtype=np.uint8), color=colour)
        except (OSError, ValueError) as error:
            reasons.append(f"{name}: {error}")
            continue
        size = size or image.shape[:2]
        if image.shape[:2] != size:
            reasons.append(f"{name}: {image.shape[1]}x{image.shape[0]}, expected {size[1]}x{size[0]}")
    if meta is not None:
        beyond = layout.flow_x.format(meta.num_flows + layout.start_index)
        if beyond in names:
            reasons.append(f"holds {beyond} beyond the {meta.num_flows} fields meta.json says")
    if not reasons:
        return None
    more = len(reasons) - _REASONS_PER_VIDEO
    return "; ".join(reasons[:_REASONS_PER_VIDEO]) + (f"; and {more} more" if more > 0 else "")


def verify_many(root: Path | str, layout: FrameLayout | None, video_ids: list[str],
                workers: int | None = None) -> dict[str, str]:
    """``verify_video`` for each video on threads (reading and JPEG decoding release the
    GIL); the damaged ones with their reasons."""

    def one(video_id: str) -> tuple[str, str | None]:
        # A store per video: a store's per-video caches are not meant to be shared by threads.
        return video_id, verify_video(open_flow_store(root, layout=layout), video_id)

    with ThreadPoolExecutor(workers or min(16, os.cpu_count() or 1)) as pool:
        return {video_id: reason for video_id, reason in pool.map(one, video_ids) if reason is not None}
