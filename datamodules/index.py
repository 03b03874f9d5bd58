"""The video index: which listed videos are usable, with their frame and flow counts, cached.

Building it stats every listed file and, where no ``meta.json`` states the frame count,
opens the video with decord: minutes to hours at Kinetics scale. So the result is cached
under a key made of the annotation records, the roots and the options (a changed annotation
file gives a new key, hence a rebuild). A cached index is trusted while the modification
times it recorded still hold for

- every folder a listed video may lie in (a class folder, a Kinetics split/label folder):
  adding, removing or renaming a video changes its folder's time;
- every video's folder under the frames root: writing flow files or ``meta.json`` (an
  atomic rename) changes it.

That is a stat per video and per class folder on load, never a decode. The trade-off: a
video overwritten in place (same name, no rename) goes unnoticed; delete the cache to force
a rebuild. Frame counts probed from videos are kept apart, keyed by path, size and
modification time, so a rebuild after an annotation change decodes only new videos.

Flow folders without ``meta.json`` (extracted by denseflow or mmaction2's tools) are
accepted when they hold at least one flow field, counted by file names: existing extracted
datasets must work. Such a folder cannot be told from an interrupted extraction, so they
are listed (``flow_without_meta``) for the user to judge; our extractor always writes meta.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import decord
from tqdm import tqdm

from datamodules.annotations.records import Annotations, VideoRecord, strip_extension
from flow.layout import FrameLayout
from flow.meta import write_json_atomic
from flow.packed import open_flow_store
from flow.paths import safe_join
from flow.store import FolderFlowStore

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: stamps cover packs (an index built before never saw them); 3: flow_frames, flow_steps
FRAME_COUNTS_FILE = "frame_counts.json"
_WORKERS = min(16, 4 * (os.cpu_count() or 1))  # stats and probes wait on the disk more than the CPU


@dataclass
class VideoIndex:
    """The usable videos (parallel lists) and what was dropped or looked wrong.

    ``paths`` are absolute (None where the video was not needed and is absent);
    ``num_frames`` / ``num_flows`` are None where unknown. Problem lists hold video ids,
    ``rejected`` the entries as listed; ``frame_count_mismatch`` holds
    (video_id, decoder count, meta.json count).
    """

    classes: list[str]
    video_ids: list[str] = field(default_factory=list)
    paths: list[str | None] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    num_frames: list[int | None] = field(default_factory=list)
    num_flows: list[int | None] = field(default_factory=list)
    # From meta.json: the frames the flow was computed from (every step-th video frame) and
    # that step; None and 1 without meta.json. The datamodules read counts here, once.
    flow_frames: list[int | None] = field(default_factory=list)
    flow_steps: list[int] = field(default_factory=list)
    listed: int = 0
    missing: list[str] = field(default_factory=list)
    incomplete_flow: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    flow_without_meta: list[str] = field(default_factory=list)
    frame_count_mismatch: list[tuple[str, int, int]] = field(default_factory=list)
    problems_file: str | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.video_ids)

    def dropped(self) -> int:
        return len(self.missing) + len(self.incomplete_flow) + len(self.rejected) + len(self.unreadable)


def probe_num_frames(path: str) -> int:
    """The decoder's frame count (container metadata read by decord, no full decode)."""
    return len(decord.VideoReader(path, num_threads=1))


@dataclass
class _Entry:
    """What inspecting one record found; ``problem`` None means usable."""

    video_id: str
    path: str | None = None
    label: int = -1
    num_frames: int | None = None
    num_flows: int | None = None
    problem: str | None = None
    without_meta: bool = False
    decoder_frames: int | None = None
    meta_frames: int | None = None
    meta_step: int = 1
    probe: tuple[str, int, int, int] | None = None  # (path, size, mtime_ns, count), new to the count cache
    # The mtimes of the frames folder (and pack), taken before reading them: see stamp_paths.
    stamps: list[tuple[str, int | None]] = field(default_factory=list)


@dataclass
class _Inspector:
    video_root: Path
    store: FolderFlowStore | None
    needs_video: bool
    needs_flow: bool
    probe_frames: bool
    verify_frames: bool
    known_counts: dict[str, list[int]]

    def __call__(self, record: VideoRecord) -> _Entry:
        entry = _Entry(record.video_id, label=record.label, num_frames=record.num_frames)
        try:
            located = [(name, safe_join(self.video_root, name)) for name in record.candidates()]
            if self.store is not None:
                for video_id in {record.video_id, *(strip_extension(name) for name, _ in located)}:
                    self.store.folder(video_id)
        except ValueError:
            entry.video_id, entry.problem = record.path or record.video_id, "rejected"
            return entry
        found = next(((name, path) for name, path in located if path.is_file()), None)
        if found is not None:
            entry.video_id, entry.path = strip_extension(found[0]), str(found[1])
        elif located and self.needs_video:
            entry.problem = "missing"
            return entry
        if self.store is not None and not self._inspect_flow(entry, has_video=bool(located)):
            return entry
        if entry.path is not None and self.probe_frames and (entry.num_frames is None or self.verify_frames):
            self._probe(entry)
        return entry

    def _inspect_flow(self, entry: _Entry, has_video: bool) -> bool:
        """Fill flow and frame counts from the frames folder; False when the entry is dropped."""
        store = self.store
        entry.stamps = [(str(path), _mtime(path)) for path in store.stamp_paths(entry.video_id)]
        try:
            meta, broken = store.meta(entry.video_id), False
        except ValueError as error:  # a malformed meta.json: the folder is not trusted
            log.warning("%s", error)
            meta, broken = None, True
        exists = store.exists(entry.video_id)
        if not has_video and not exists:
            entry.problem = "missing"  # a rawframe list's folder is the video
            return False
        if meta is not None:
            entry.num_flows, entry.meta_frames, entry.meta_step = meta.num_flows, meta.num_frames, meta.step
            if meta.step == 1:  # with a step, meta.json counts sub-sampled frames, not the video's
                entry.num_frames = meta.num_frames
        elif exists and not broken:
            entry.num_flows = store.num_flows(entry.video_id)
            entry.without_meta = entry.num_flows > 0
        if self.needs_flow and meta is None and not entry.num_flows:
            entry.problem = "incomplete_flow"
            return False
        return True

    def _probe(self, entry: _Entry) -> None:
        stat = os.stat(entry.path)
        known = self.known_counts.get(entry.path)
        if known is not None and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            count = known[2]
        else:
            try:
                count = probe_num_frames(entry.path)
            except Exception as error:  # decord raises its own DECORDError, or RuntimeError
                log.debug("cannot decode %s: %s", entry.path, error)
                if self.needs_video:
                    entry.problem = "unreadable"
                return
            entry.probe = (entry.path, stat.st_size, stat.st_mtime_ns, count)
        entry.decoder_frames = count
        if entry.num_frames is None:
            entry.num_frames = count


def _mtime(path: Path | str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _stamps(paths: Iterable[str]) -> dict[str, int | None]:
    paths = list(paths)
    with ThreadPoolExecutor(_WORKERS) as pool:
        return dict(zip(paths, pool.map(_mtime, paths, chunksize=256)))


def _video_folders(records: list[VideoRecord], video_root: Path) -> set[str]:
    """Every folder a listed video may lie in; entries that climb out are skipped (never stat'ed)."""
    folders = set()
    for record in records:
        for name in record.candidates():
            parts = Path(name).parts
            if ".." not in parts and not Path(name).is_absolute():
                folders.add(str(video_root.joinpath(*parts[:-1])))
    return folders


def default_cache_dir(video_root: Path | str, frames_root: Path | str | None = None) -> Path:
    """``<frames_root or video_root>/.index_cache``, or ``~/.cache/twostream`` where that is read-only."""
    preferred = Path(frames_root if frames_root is not None else video_root) / ".index_cache"
    try:
        preferred.mkdir(exist_ok=True)  # no parents: never create a root that is not there
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = Path.home() / ".cache" / "twostream"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):  # absent or damaged: rebuild
        return None
    return data if isinstance(data, dict) else None


def _cache_key(annotations: Annotations, video_root: Path, frames_root: Path | None, options: dict) -> str:
    payload = {
        "version": CACHE_VERSION,
        "classes": annotations.classes,
        "records": [list(asdict(record).values()) for record in annotations.records],
        "video_root": str(video_root),
        "frames_root": str(frames_root) if frames_root is not None else None,
        **options,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _load(cache_file: Path, key: str) -> VideoIndex | None:
    data = _read_json(cache_file)
    if data is None or data.get("version") != CACHE_VERSION or data.get("key") != key:
        return None
    stamps = data["stamps"]
    if _stamps(stamps) != stamps:
        log.info("video or frames folders changed since %s was built; rebuilding", cache_file)
        return None
    fields_ = data["index"]
    fields_["frame_count_mismatch"] = [tuple(item) for item in fields_["frame_count_mismatch"]]
    return VideoIndex(**{**fields_, "from_cache": True})


_PROBLEMS = ("missing", "incomplete_flow", "rejected", "unreadable")


def _assemble(classes: list[str], entries: list[_Entry]) -> VideoIndex:
    index = VideoIndex(list(classes), listed=len(entries))
    for entry in entries:
        if entry.problem is not None:
            getattr(index, entry.problem).append(entry.video_id)
            continue
        index.video_ids.append(entry.video_id)
        index.paths.append(entry.path)
        index.labels.append(entry.label)
        index.num_frames.append(entry.num_frames)
        index.num_flows.append(entry.num_flows)
        index.flow_frames.append(entry.meta_frames)
        index.flow_steps.append(entry.meta_step)
        if entry.without_meta:
            index.flow_without_meta.append(entry.video_id)
        if (entry.decoder_frames is not None and entry.meta_frames is not None
                and math.ceil(entry.decoder_frames / entry.meta_step) != entry.meta_frames):
            index.frame_count_mismatch.append((entry.video_id, entry.decoder_frames, entry.meta_frames))
    return index


def _write_problems(index: VideoIndex, path: Path) -> None:
    lines = [f"{problem}\t{video_id}" for problem in _PROBLEMS for video_id in getattr(index, problem)]
    lines += [f"flow_without_meta\t{video_id}" for video_id in index.flow_without_meta]
    lines += [f"frame_count_mismatch\t{video_id}\tdecoder={decoder}\tmeta={meta}"
              for video_id, decoder, meta in index.frame_count_mismatch]
    if lines:
        path.write_text("problem\tvideo\tdetail\n" + "\n".join(lines) + "\n", encoding="utf-8")
        index.problems_file = str(path)
    else:
        path.unlink(missing_ok=True)  # a list from an earlier build would mislead


def _warn_dropped(index: VideoIndex) -> None:
    if not index.dropped():
        return
    names = {"missing": "missing video", "incomplete_flow": "without complete flow",
             "rejected": "rejected path", "unreadable": "unreadable video"}
    counts = ", ".join(f"{len(getattr(index, p))} {names[p]}" for p in _PROBLEMS if getattr(index, p))
    warnings.warn(f"{index.dropped()} of {index.listed} videos dropped ({counts}); "
                  f"list written to {index.problems_file}", stacklevel=3)


def build_index(
    annotations: Annotations,
    video_root: Path | str,
    frames_root: Path | str | None = None,
    *,
    needs_video: bool = True,
    needs_flow: bool = False,
    cache_dir: Path | str | None = None,
    probe_frames: bool = True,
    verify_frames: bool = False,
    layout: FrameLayout | None = None,
) -> VideoIndex:
    """Check every listed video once and keep the usable ones; cached (see the module's docstring).

    Args:
        annotations: what a reader of ``datamodules.annotations`` returned.
        video_root: the folder the listed video paths are relative to.
        frames_root: one folder per video id with flow (and RGB) frames; required for
            ``needs_flow`` and for rawframe lists.
        needs_video: drop records whose video file is absent.
        needs_flow: drop records without a complete flow folder.
        cache_dir: where the index is kept; default ``<frames_root or video_root>/.index_cache``.
        probe_frames: open videos whose frame count no meta.json or list gives (the slow part).
        verify_frames: probe every video, also those with a meta.json, to report
            ``frame_count_mismatch`` (what ``python -m datamodules check`` does).
        layout: file names in flow folders without meta.json (denseflow, mmaction2); default ours.
    """
    video_root = Path(video_root).resolve()
    frames_root = Path(frames_root).resolve() if frames_root is not None else None
    if frames_root is None and (needs_flow or any(r.path is None for r in annotations.records)):
        raise ValueError("a frames_root is needed for flow and for rawframe lists")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(video_root, frames_root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    options = {"needs_video": needs_video, "needs_flow": needs_flow, "probe_frames": probe_frames,
               "verify_frames": verify_frames,
               "layout": [layout.templates(), layout.start_index] if layout is not None else None}
    key = _cache_key(annotations, video_root, frames_root, options)
    cache_file = cache_dir / f"index-{key}.json"
    index = _load(cache_file, key)
    if index is None:
        index, stamps = _build(annotations, video_root, frames_root, cache_dir, options, layout)
        _write_problems(index, cache_dir / f"index-{key}.problems.tsv")
        write_json_atomic(cache_file, {"version": CACHE_VERSION, "key": key, "stamps": stamps,
                                       "index": {**asdict(index), "from_cache": False}})
    _warn_dropped(index)
    return index


def _build(
    annotations: Annotations,
    video_root: Path,
    frames_root: Path | None,
    cache_dir: Path,
    options: dict,
    layout: FrameLayout | None,
) -> tuple[VideoIndex, dict[str, int | None]]:
    records = annotations.records
    # Folder times are taken before looking inside, so a change during the build triggers a rebuild.
    stamps = _stamps(_video_folders(records, video_root))
    counts_file = cache_dir / FRAME_COUNTS_FILE
    known_counts = _read_json(counts_file) or {}
    inspector = _Inspector(
        video_root,
        open_flow_store(frames_root, layout=layout) if frames_root is not None else None,
        options["needs_video"], options["needs_flow"], options["probe_frames"], options["verify_frames"],
        known_counts,
    )
    with ThreadPoolExecutor(_WORKERS) as pool:
        # disable=None: a bar on terminals, silence in logs and CI.
        entries = list(tqdm(pool.map(inspector, records), total=len(records),
                            desc="indexing videos", unit="video", disable=None))
    stamps.update(stamp for entry in entries for stamp in entry.stamps)
    probes = [entry.probe for entry in entries if entry.probe is not None]
    if probes:
        # Re-read: another process may have added counts meanwhile.
        merged = _read_json(counts_file) or {}
        merged.update({path: [size, mtime, count] for path, size, mtime, count in probes})
        write_json_atomic(counts_file, merged)
    return _assemble(annotations.classes, entries), stamps
