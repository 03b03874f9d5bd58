"""Folders or packs for flow: how fast each gives a worker its samples, and what each costs on disk.

Two tables (``benchmarks/report.py`` turns their ``--json`` into docs/benchmarks.md):

1. Reading: samples/s of the folder store (``flow.store.FolderFlowStore``) and of the
   packed store (``flow.packed.PackedFlowStore``) on the same JPEGs, in one process and
   one thread, as a DataLoader worker reads them: an L=10 train stack (20 JPEGs), a
   64-field clip (128), a 250-view test (25 evenly spaced stacks of 10 fields: 500), each
   decoded (``read_flow``), and the train stack as bytes alone (what the stores themselves
   cost, no JPEG decoding). Each sample opens a new store, as a worker does on a dataset
   of more videos than the store keeps. "cold": before each sample, untimed, the files it
   reads are dropped from the page cache (``benchmarks/page_cache.py``: per-file
   ``posix_fadvise(DONTNEED)``, checked with ``mincore``: the "resident" figure); on a
   virtual machine a cold read may still come from the host's cache, and where files
   cannot be dropped (tmpfs) the cold rows are left out. "warm": every file read once
   before. The stores alternate over rounds on the same samples; each keeps its fastest.
2. Disk and index: files, directories, bytes on disk (allocated blocks) and of data, and
   the index a training run builds first (``datamodules.index.build_index``: every
   video's meta.json or pack opened) cold (the files' pages dropped; directory entries and
   inodes stay cached) and warm, and loaded from its cache (which checks every folder's
   or pack's time); for the reading root and for ``--videos`` tiny videos (one 32x24
   field each, written for at most ``Sizes.index_seconds``: the count made is printed).

Data: random smooth motion (a 5x6 grid of N(0, 1 px) displacements, bicubic up to 341x256:
9.3 KiB per field at quality 95, about real TV-L1 flow's size), encoded by ``flow.codec``
in the extractor's layout, packed by ``flow.pack_convert``; made under ``--dir`` (on the
disk to measure, not tmpfs) and removed at the end.

Run:  python benchmarks/flow_store.py            (under 2 minutes on 2 cores)
      python benchmarks/flow_store.py --quick    (smoke run: tiny data, short rounds)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from itertools import cycle
from pathlib import Path

import cv2
import numpy as np
import torch
from page_cache import cold_cache_problem, drop, write_back
from table import Report, add_json_option, describe_machine, progress, ratio

from datamodules.annotations.records import Annotations, VideoRecord
from datamodules.index import build_index
from flow.codec import DEFAULT_BOUND, DEFAULT_JPEG_QUALITY, encode_flow
from flow.layout import OURS
from flow.meta import META_FILE, FlowMeta, json_text
from flow.pack_convert import convert_many
from flow.packed import PackedFlowStore, pack_path
from flow.store import FolderFlowStore

SIZE = (341, 256)  # UCF-101's 320x240 at the extractor's short side 256
INDEX_SIZE = (32, 24)  # the many-video root's one field
STORES = ("folder", "packed")


@dataclass(frozen=True)
class Sizes:
    """How much a run reads and writes (``--quick``: ``QUICK``)."""

    stack_videos: int = 12  # videos of the reading root
    fields: int = 250  # per video of the reading root (>= 250: distinct test stacks)
    seconds: float = 0.5  # of reading per store and round
    rounds: int = 2  # per row, the stores alternating
    videos: int = 10_000  # of the many-video root (--videos)
    index_seconds: float = 30.0  # at most this long writing the many-video root


QUICK = Sizes(stack_videos=2, fields=64, seconds=0.05, rounds=1, videos=100, index_seconds=10.0)


# --- data ----------------------------------------------------------------------------

def smooth_fields(count: int, size: tuple[int, int], rng: np.random.Generator) -> list[tuple[bytes, bytes]]:
    """``count`` fields of random smooth motion, as the x and y JPEGs of ``flow.codec``."""
    width, height = size
    encoded = []
    for _ in range(count):
        coarse = rng.normal(0.0, 1.0, (5, 6, 2)).astype(np.float32)
        field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        x, y = encode_flow(field, DEFAULT_BOUND, DEFAULT_JPEG_QUALITY)
        encoded.append((x, y))
    return encoded


def meta_json(num_flows: int, size: tuple[int, int]) -> bytes:
    """The meta.json the extractor writes for such a video (``write_meta``'s bytes)."""
    meta = FlowMeta(algorithm="synthetic", params={}, bound=DEFAULT_BOUND, jpeg_quality=DEFAULT_JPEG_QUALITY,
                    width=size[0], height=size[1], num_frames=num_flows + 1, num_flows=num_flows, fps=25.0,
                    source="benchmarks/flow_store.py")
    return json_text(asdict(meta), indent=2).encode()


def write_folders(root: Path, video_ids: Iterable[str], fields: list[tuple[bytes, bytes]], size: tuple[int, int],
                  rng: np.random.Generator | None, deadline: float = float("inf")) -> list[str]:
    """One folder per video id with ``fields`` (shuffled per video when ``rng`` is given),
    meta.json last; stops at ``deadline`` (``time.perf_counter``). Returns the ids written."""
    written = []
    meta = meta_json(len(fields), size)
    for video_id in video_ids:
        if time.perf_counter() > deadline:
            break
        folder = root / video_id
        folder.mkdir(parents=True)
        order = rng.permutation(len(fields)) if rng is not None else range(len(fields))
        for k, n in enumerate(order):
            for path, data in zip(OURS.flow_paths(folder, k), fields[n]):
                path.write_bytes(data)
        (folder / META_FILE).write_bytes(meta)
        written.append(video_id)
    return written


def files_under(root: Path) -> list[Path]:
    return [Path(folder, name) for folder, _, names in os.walk(root) for name in names]


@dataclass(frozen=True)
class Root:
    """A root of ``video_ids`` in both stores."""

    name: str
    folders: Path
    packs: Path
    video_ids: list[str]

    def path(self, store: str) -> Path:
        return self.folders if store == "folder" else self.packs

    def sample_files(self, store: str, video_id: str, indices: Iterable[int]) -> list[Path]:
        """The files reading ``indices`` of the video opens: its pack, or its meta.json and JPEGs."""
        if store == "packed":
            return [pack_path(self.packs, video_id)]
        folder = self.folders / video_id
        return [folder / META_FILE, *(path for k in set(indices) for path in OURS.flow_paths(folder, k))]


def make_root(name: str, base: Path, video_ids: Sequence[str], fields: list[tuple[bytes, bytes]],
              size: tuple[int, int], rng: np.random.Generator | None, seconds: float = float("inf")) -> Root:
    progress(f"writing {name}")
    written = write_folders(base / "folders", video_ids, fields, size, rng, time.perf_counter() + seconds)
    summary = convert_many("pack", base / "folders", base / "packs", workers=1, video_ids=written)
    if summary.failed or summary.converted != len(written):
        raise SystemExit(f"packing {base / 'folders'} failed: {summary.format()}")
    write_back()  # the cold rows drop clean pages only
    return Root(name, base / "folders", base / "packs", written)


# --- table 1: reading ----------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """What one row reads: ``stacks`` stacks of ``length`` fields per sample."""

    name: str
    length: int
    stacks: int = 1
    decode: bool = True

    def plan(self, root: Root, num_fields: int, count: int, rng: np.random.Generator) -> list[tuple[str, list[int]]]:
        """``count`` samples: (video id, field indices)."""
        if self.stacks > 1:  # a test: evenly spaced stacks over the whole video
            starts = np.linspace(0, num_fields - self.length, self.stacks).round().astype(int)
            indices = [int(s) + k for s in starts for k in range(self.length)]
            return [(root.video_ids[n % len(root.video_ids)], indices) for n in rng.permutation(count)]
        plan = []
        for _ in range(count):
            start = int(rng.integers(0, num_fields - self.length + 1))
            plan.append((str(rng.choice(root.video_ids)), list(range(start, start + self.length))))
        return plan


def make_store(store: str, root: Root) -> FolderFlowStore:
    return FolderFlowStore(root.folders) if store == "folder" else PackedFlowStore(root.packs)


def read_sample(store: FolderFlowStore, video_id: str, indices: list[int], decode: bool) -> None:
    if decode:
        store.read_flow(video_id, indices)
        return
    folder, layout = store.folder(video_id), store.layout_of(video_id)
    for k in dict.fromkeys(indices):
        for path in layout.flow_paths(folder, k):
            if isinstance(store, PackedFlowStore):
                store.member(video_id, path.name)
            else:
                np.fromfile(path, dtype=np.uint8)  # as FolderFlowStore reads a file


def timed_round(store_name: str, root: Root, sample: Sample, plan: list[tuple[str, list[int]]], cold: bool,
                seconds: float) -> tuple[float, float, float | None]:
    """(samples/s and CPU ms per sample of reading alone, the largest resident fraction seen
    after dropping)."""
    reading, cpu, count, resident = 0.0, 0.0, 0, None
    for video_id, indices in cycle(plan):
        store = make_store(store_name, root)
        if cold:
            left = drop(root.sample_files(store_name, video_id, indices))
            resident = None if left is None else max(left, resident or 0.0)
        tick, cpu_tick = time.perf_counter(), time.process_time()
        read_sample(store, video_id, indices, sample.decode)
        reading += time.perf_counter() - tick
        cpu += time.process_time() - cpu_tick
        count += 1
        if reading >= seconds:
            break
    return count / reading, 1000 * cpu / count, resident


def reading_rows(report: Report, root: Root, sizes: Sizes, cold_problem: str | None) -> None:
    samples = [
        Sample("L=10 train stack", 10),
        Sample("64-field clip", 64),
        Sample("250-view test (25 x 10 fields)", 10, stacks=25),
        Sample("L=10 train stack, bytes only (no JPEG decoding)", 10, decode=False),
    ]
    caches = ["cold", "warm"] if cold_problem is None else ["warm"]
    rows = report.table("Reading flow samples: folder store vs packed store", [
        "sample", "JPEGs", "page cache", "folder samples/s", "packed samples/s", "packed vs folder",
        "folder CPU ms/sample", "packed CPU ms/sample"])
    rng = np.random.default_rng(0)
    warmed = False
    for sample, cache in [(sample, cache) for sample in samples for cache in caches]:
        if cache == "warm" and not warmed:
            for store in STORES:
                for path in files_under(root.path(store)):
                    path.read_bytes()
            warmed = True
        plan = sample.plan(root, sizes.fields, 4000 if sample.stacks == 1 else len(root.video_ids), rng)
        progress(f"timing {sample.name}, {cache}")
        best = dict.fromkeys(STORES, (0.0, 0.0))
        resident: list[float] = []
        for _ in range(sizes.rounds):
            for store in STORES:
                rate, cpu, left = timed_round(store, root, sample, plan, cache == "cold", sizes.seconds)
                best[store] = max(best[store], (rate, cpu))
                resident += [] if left is None else [left]
        label = cache if cache == "warm" else f"cold ({max(resident, default=0.0):.0%} resident)"
        jpegs = 2 * len(set(plan[0][1]))
        (folder, folder_cpu), (packed, packed_cpu) = best["folder"], best["packed"]
        rows.add(sample.name, jpegs, label, folder, packed, ratio(packed / folder), folder_cpu, packed_cpu)


# --- table 2: disk and index ---------------------------------------------------------

def disk_usage(root: Path) -> tuple[int, int, int, int]:
    """(files, directories, bytes allocated on disk, bytes of data) under ``root``."""
    files = directories = allocated = data = 0
    for folder, subfolders, names in os.walk(root):
        directories += len(subfolders)
        allocated += os.stat(folder).st_blocks * 512
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files += 1
            allocated += stat.st_blocks * 512
            data += stat.st_size
    return files, directories, allocated, data


def index_seconds(root: Root, store: str, cache_dir: Path) -> float:
    annotations = Annotations(["0"], [VideoRecord(video_id, None, 0) for video_id in root.video_ids])
    tick = time.perf_counter()
    index = build_index(annotations, root.path(store), root.path(store), needs_video=False, needs_flow=True,
                        cache_dir=cache_dir, probe_frames=False)
    seconds = time.perf_counter() - tick
    if len(index) != len(root.video_ids):
        raise SystemExit(f"the index of {root.path(store)} holds {len(index)} of {len(root.video_ids)} videos")
    return seconds


def disk_rows(report: Report, roots: list[Root], work: Path, cold_problem: str | None) -> None:
    rows = report.table("Disk and index: folders vs packs", [
        "root", "store", "videos", "files", "directories", "MiB on disk", "MiB of data", "on disk vs folder",
        "index build s, cold", "index build s, warm", "index from cache s", "index cold vs folder"])
    resident: list[float] = []
    for root in roots:
        base: dict[str, float] = {}
        for store in STORES:
            progress(f"indexing {root.name}, {store}")
            files, directories, allocated, data = disk_usage(root.path(store))
            cold = None
            if cold_problem is None:
                resident.append(drop(files_under(root.path(store))) or 0.0)
                cold = index_seconds(root, store, Path(tempfile.mkdtemp(dir=work)))
            cache = Path(tempfile.mkdtemp(dir=work))
            warm = index_seconds(root, store, cache)
            cached = index_seconds(root, store, cache)
            base.setdefault("allocated", allocated)
            base.setdefault("cold", cold or 0.0)
            rows.add(root.name, store, len(root.video_ids), files, directories, allocated / 2**20, data / 2**20,
                     ratio(allocated / base["allocated"]), cold, warm, cached,
                     ratio(cold / base["cold"]) if cold is not None and base["cold"] else None)
    if cold_problem is None:
        report.note(f"cold index builds: the files' pages dropped ({max(resident):.0%} left resident); directory "
                    "entries and inodes stay cached")


# --- main ----------------------------------------------------------------------------

def run(sizes: Sizes, work: Path, report: Report) -> None:
    cold_problem = cold_cache_problem(work)
    if cold_problem:
        report.note(f"cold rows left out: {cold_problem}")
    rng = np.random.default_rng(0)
    stack_ids = [f"Class{n % 3}/v_{n:04d}" for n in range(sizes.stack_videos)]
    stacks = make_root(f"{len(stack_ids)} videos x {sizes.fields} fields, {SIZE[0]}x{SIZE[1]}", work / "stacks",
                       stack_ids, smooth_fields(sizes.fields, SIZE, rng), SIZE, rng)
    report.note(f"data: {stacks.name}; {disk_usage(stacks.folders)[3] / 2**10 / len(stack_ids) / sizes.fields:.1f} "
                "KiB per field (x + y JPEGs)")
    reading_rows(report, stacks, sizes, cold_problem)
    many_ids = [f"Class{n % 400:03d}/v_{n:07d}" for n in range(sizes.videos)]
    many = make_root("the many-video root", work / "many", many_ids, smooth_fields(1, INDEX_SIZE, rng),
                     INDEX_SIZE, None, sizes.index_seconds)
    many = replace(many, name=f"{len(many.video_ids)} videos x 1 field, {INDEX_SIZE[0]}x{INDEX_SIZE[1]}")
    if len(many.video_ids) < len(many_ids):
        report.note(f"the many-video root: {len(many.video_ids)} of {len(many_ids)} videos written in "
                    f"{sizes.index_seconds:g} s")
    disk_rows(report, [stacks, many], work, cold_problem)


def remove_tree(root: Path) -> None:
    """``shutil.rmtree``, its sub-folders on threads: tens of thousands of small files go in
    seconds where one thread waits a minute on a busy disk."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(partial(shutil.rmtree, ignore_errors=True), root.glob("*/*")))
    shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, short rounds")
    parser.add_argument("--videos", type=int, help=f"videos of the many-video root (default {Sizes.videos}, "
                        f"quick {QUICK.videos})")
    parser.add_argument("--dir", type=Path, help="where to write the data (default: the system's temporary folder)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.videos is not None:
        if args.videos < 1:
            parser.error(f"argument --videos: must be >= 1, got {args.videos}")
        sizes = replace(sizes, videos=args.videos)
    report = Report("flow_store", describe_machine(opencv=cv2.__version__), args.json)
    work = Path(tempfile.mkdtemp(prefix="flow_store-", dir=args.dir))
    threads = cv2.getNumThreads(), torch.get_num_threads()
    try:
        cv2.setNumThreads(1)  # one thread, as in a DataLoader worker
        torch.set_num_threads(1)
        run(sizes, work, report)
    finally:
        progress(f"removing {work}")
        cv2.setNumThreads(threads[0])  # restored for a caller that goes on (the tests)
        torch.set_num_threads(threads[1])
        remove_tree(work)
    report.finish()


if __name__ == "__main__":
    main()
