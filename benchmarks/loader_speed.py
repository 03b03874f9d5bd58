"""How fast the data side produces training and test samples, per DataLoader worker.

Measures samples/s of the project's own dataset (``VideoDataModule.make_dataset``, i.e.
``datamodules.datasets.VideoDataset`` exactly as training builds it) for:

- an RGB frame (2D spatial train sample: decode 1 frame, short side 256, random 224 crop,
  flip, ImageNet normalisation), with the decord and the torchcodec reader;
- a flow stack, L=10 (2D temporal train sample: 20 JPEGs, crop, flip negating x, mean
  vector subtracted);
- a 64-frame RGB clip (3D, [-1, 1]), decord and torchcodec;
- a 64-frame flow clip (3D, clipped to +-20 px and scaled to [-1, 1]);
- a 250-view test sample (2D: 25 positions x 10 crops) of a flow stack and of an RGB
  frame (decord and torchcodec).

"Per worker" is the main process with one thread everywhere (torch, OpenCV, decoders),
as a DataLoader worker runs. The main figure is samples per second of this process's CPU
time (``time.process_time``, all its threads): what a worker does with a core of its own.
It moves less than wall clock when other processes share the machine, but it still moves
(they compete for caches and memory bandwidth), so absolute numbers of rows timed minutes
apart can differ by up to 2x on a busy machine; wall-clock rates are printed beside it.
The variants of one row (decord, torchcodec, torchvision) alternate over ``--rounds``
rounds of ``--seconds`` each on the same items in the same order, and each keeps its
fastest round: compare variants within a row, where the ratios are printed. The last column runs the training rows through a DataLoader with
``--workers`` workers (wall clock, warm-up batches excluded): on a loaded machine with few
cores it says more about the load than about the loader.

Outside reference: ``torchvision.datasets.UCF101`` on the same videos and annotation
folder (``fold=1, train=True, output_format="TCHW"``) reading 64-frame clips, against our
64-frame RGB clips, twice: decode only (both give uint8 (64, 3, H, W) at the video's size;
ours is the dataset with its transforms replaced by a pass-through) and with our training
augmentation on both sides (torchvision gets our ``Augment`` as its transform). Building
torchvision's clip index (it opens every video under the root) is timed apart and excluded
from its rate. Which decoder torchvision uses underneath is read from its source and printed:
``torchvision.io.read_video`` (PyAV) up to torchvision 0.25; torchcodec from 0.26, which
removed ``read_video`` and ``VideoReader`` from ``torchvision.io``. Where the decoder torchvision's UCF101 needs is missing
(torchcodec not installed, or a ``read_video`` that this torchvision lacks) the comparison is
skipped and the report says why.

Each table row is printed as soon as it is measured (``benchmarks/table.py``), rates and
times at 3 significant digits; ``--json FILE`` writes the tables unrounded with the machine.

Data: a synthetic UCF-101 (XVID .avi at 320x240, ``datamodules.synthetic.generate``) with
DIS flow (``flow.extract.extract_many``) in a temporary folder, or ``--data DIR``: a
folder holding ``UCF-101/``, ``ucfTrainTestlist/`` and ``flow/`` (the frames root); what is
missing there is generated or extracted and kept, so a second run reuses it.

Run:  python benchmarks/loader_speed.py                  (full, under 10 minutes on 2 cores)
      python benchmarks/loader_speed.py --quick          (smoke run: tiny data, short clips, 2x10 test views)
      python benchmarks/loader_speed.py --data /tmp/ucf  (keep the data for the next run)
      python benchmarks/loader_speed.py --json loader.json
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import tempfile
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import cv2
import decord
import numpy as np
import torch
import torchvision
from table import Cell, Report, Table, add_json_option, describe_machine, progress, ratio, shape, significant
from torch.utils.data import DataLoader, Dataset, RandomSampler

from datamodules.annotations import UCF101
from datamodules.datamodule import VideoDataModule
from datamodules.datasets import VideoDataset
from datamodules.modality import modality_keys
from datamodules.synthetic import generate
from datamodules.transforms import Augment
from flow.extract import ExtractionConfig, extract_many, list_videos
from flow.meta import read_meta
from models.input_spec import InputSpec

try:
    import torchcodec
except (ImportError, RuntimeError, OSError) as error:  # RuntimeError/OSError: its FFmpeg libraries do not load
    raise SystemExit(f"loader_speed compares decord with torchcodec, which does not load here ({error}): "
                     "pip install -e '.[torchcodec]' and install FFmpeg (e.g. apt-get install ffmpeg)") from error

VIDEO_DIR, ANNOTATION_DIR, FLOW_DIR = "UCF-101", "ucfTrainTestlist", "flow"
DECODERS = ("decord", "torchcodec")
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class Settings:
    """Sizes of the data and of the measurement; ``FULL`` and ``QUICK`` below."""

    classes: int
    videos_per_class: int
    frames: int  # per generated video
    clip: int  # frames per 3D clip
    test_positions: int  # 2D test positions (x 10 crops)
    seconds: float  # per variant and round
    rounds: int
    extract_in_process: bool  # extract flow in this process (no worker pool to start) rather than ``--workers``


FULL = Settings(classes=4, videos_per_class=6, frames=96, clip=64, test_positions=25, seconds=4.0, rounds=3,
                extract_in_process=False)
QUICK = Settings(classes=2, videos_per_class=3, frames=24, clip=16, test_positions=2, seconds=0.3, rounds=1,
                 extract_in_process=True)


@dataclass(frozen=True)
class Row:
    """One kind of sample: a modality at a stage, read with one RGB decoder (None for flow)."""

    name: str
    modality: str
    stage: str
    decoder: str | None


@dataclass
class Result:
    shape: tuple[int, ...]
    cpu_rate: float = 0.0  # samples per CPU second, fastest round
    wall_rate: float = 0.0  # samples per wall-clock second, fastest round
    loader_rate: float | None = None  # samples/s through a multi-worker DataLoader (wall clock)


# Data.


def prepare_data(root: Path, settings: Settings, workers: int) -> None:
    """Generate the synthetic UCF-101 under ``root`` unless it is there; extract missing flow."""
    if not (root / VIDEO_DIR).is_dir() or not (root / ANNOTATION_DIR).is_dir():
        progress(f"generating {settings.classes * settings.videos_per_class} synthetic UCF-101 videos "
                 f"({settings.frames} frames, 320x240) in {root} ...")
        generate(root, layout="ucf101", num_classes=settings.classes, videos_per_class=settings.videos_per_class,
                 num_frames=settings.frames, size=(320, 240))
    videos = list_videos(root / VIDEO_DIR)
    started = time.perf_counter()
    summary = extract_many(root / VIDEO_DIR, videos, root / FLOW_DIR, ExtractionConfig(algorithm="dis"),
                           workers=1 if settings.extract_in_process else workers, progress=False)
    if summary.failures:
        raise SystemExit(f"flow extraction failed for {len(summary.failures)} videos: {summary.failures[:3]}")
    if summary.done:
        progress(f"extracted DIS flow of {summary.done} videos in {time.perf_counter() - started:.0f} s")


def describe_data(root: Path, module: VideoDataModule) -> str:
    videos = list_videos(root / VIDEO_DIR)
    reader = decord.VideoReader(str(root / VIDEO_DIR / videos[0]), num_threads=1)
    height, width = reader[0].shape[:2]
    frames = [module.index(split).num_frames for split in ("train", "test")]
    counts = sorted({n for split in frames for n in split if n is not None})
    lengths = f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"
    meta = read_meta(root / FLOW_DIR / Path(videos[0]).with_suffix(""))
    flow = f"{meta.algorithm} flow stored as {meta.width}x{meta.height} JPEG q{meta.jpeg_quality}" if meta else "flow"
    return (f"data: {len(videos)} videos under {root / VIDEO_DIR} ({Path(videos[0]).suffix}, {width}x{height}, "
            f"{lengths} frames); split 1: {len(module.index('train'))} train / "
            f"{len(module.index('test'))} test; {flow}")


def machine() -> dict[str, object]:
    return describe_machine(torchvision=torchvision.__version__, decord=decord.__version__,
                            torchcodec=torchcodec.__version__, opencv=cv2.__version__)


# Datasets.


def data_module(root: Path, settings: Settings, modality: str, decoder: str) -> VideoDataModule:
    """The DataModule training would use; RGB-only modalities get no frames root, as in training."""
    frames_root = str(root / FLOW_DIR) if "flow" in modality_keys(modality) else None
    return VideoDataModule(UCF101(str(root / ANNOTATION_DIR)), video_root=str(root / VIDEO_DIR),
                           frames_root=frames_root, modality=modality, frames=settings.clip,
                           test_positions=settings.test_positions, decoder=decoder, cache_dir=str(root / "index_cache"))


class PassThrough:
    """Stands in for ``Augment`` in a ``VideoDataset``: hands the decoded uint8 (T, 3, H, W)
    clip on untouched, so the dataset's own reading path is timed without transforms."""

    def __init__(self, specs: Mapping[str, InputSpec]):
        self.specs = dict(specs)

    def __call__(self, frames: Mapping[str, torch.Tensor], flow_bound: float = 0.0,
                 rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        return {key: clip[0] for key, clip in frames.items()}


class AugmentClip:
    """Our training augmentation as a torchvision transform: uint8 (T, 3, H, W) -> (3, T, 224, 224)."""

    def __init__(self, augment: Augment, seed: int = 0):
        self.augment, self.rng = augment, np.random.default_rng(seed)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self.augment({"rgb": clip}, rng=self.rng)["rgb"]


class TorchvisionClips(Dataset):
    """torchvision's UCF101 items reduced to the video tensor (its audio is always empty here)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.dataset[i][0]


@dataclass(frozen=True)
class Reference:
    """How torchvision's UCF101 decodes, and why it cannot here (None: it can)."""

    decoder: str
    missing: str | None


def torchvision_reference(get_clip_source: str | None = None) -> Reference:
    """What ``VideoClips.get_clip`` decodes with (read from torchvision's source, or from
    ``get_clip_source``), and whether what it needs is installed."""
    version = torchvision.__version__
    try:
        from torchvision.datasets.video_utils import VideoClips
    except ImportError as error:
        return Reference("none", f"torchvision {version} has no video datasets ({error})")
    source = inspect.getsource(VideoClips.get_clip) if get_clip_source is None else get_clip_source
    if "torchcodec" in source:
        audio = " plus an AudioDecoder attempt per clip" if "AudioDecoder" in source else ""
        decoder = f"torchcodec VideoDecoder (default seek_mode='exact', 1 FFmpeg thread){audio}"
        if importlib.util.find_spec("torchcodec") is None:
            return Reference(decoder, f"torchvision {version} decodes its video datasets with torchcodec, which is "
                                      "not installed (pip install -e '.[torchcodec]')")
        return Reference(decoder, None)
    if "read_video" in source:
        backend = getattr(torchvision, "get_video_backend", lambda: "pyav")()
        decoder = f"torchvision.io.read_video (backend {backend})"
        if not hasattr(torchvision.io, "read_video"):
            return Reference(decoder, f"torchvision {version}'s UCF101 calls torchvision.io.read_video, "
                                      "which this torchvision lacks")
        if backend == "pyav" and importlib.util.find_spec("av") is None:
            return Reference(decoder, f"torchvision {version} reads videos with PyAV, which is not installed")
        return Reference(decoder, None)
    return Reference("unknown", f"torchvision {version}'s UCF101 decodes with neither torchcodec nor "
                                "torchvision.io.read_video (see torchvision.datasets.video_utils.VideoClips.get_clip)")


# Timing.


def shape_of(sample: object) -> tuple[int, ...]:
    if isinstance(sample, torch.Tensor):
        return tuple(sample.shape)
    return tuple(next(v for k, v in sample.items() if k in ("rgb", "flow")).shape)


def time_items(dataset: Dataset, order: Sequence[int], seconds: float, min_samples: int) -> tuple[float, float]:
    """(samples per CPU second, per wall-clock second) of ``dataset[i]`` for i along ``order``
    (cycled), for at least ``seconds`` of wall clock and ``min_samples`` samples."""
    count, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while True:
        dataset[order[count % len(order)]]
        count += 1
        elapsed = time.perf_counter() - started
        if count >= min_samples and elapsed >= seconds:
            return count / (time.process_time() - cpu_started), count / elapsed


def time_loader(dataset: VideoDataset, workers: int, batch_size: int, seconds: float) -> float:
    """samples/s through a DataLoader with ``workers`` workers, after one warm-up batch per worker."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9, generator=torch.Generator().manual_seed(0))
    batches = iter(DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers))
    for _ in range(workers):
        next(batches)
    count, started = 0, time.perf_counter()
    while count < workers * batch_size or time.perf_counter() - started < seconds:
        count += len(next(batches)["label"])
    rate = count / (time.perf_counter() - started)
    del batches  # shuts the workers down
    return rate


def compare(datasets: Mapping[Key, Dataset], settings: Settings, min_samples: int) -> dict[Key, Result]:
    """Alternate the variants over the rounds on the same items; each keeps its fastest round."""
    order = np.random.default_rng(0).permutation(min(len(d) for d in datasets.values())).tolist()
    results = {name: Result(shape_of(dataset[order[0]])) for name, dataset in datasets.items()}  # warm-up
    for _ in range(settings.rounds):
        for name, dataset in datasets.items():
            cpu_rate, wall_rate = time_items(dataset, order, settings.seconds, min_samples)
            result = results[name]
            result.cpu_rate, result.wall_rate = max(result.cpu_rate, cpu_rate), max(result.wall_rate, wall_rate)
    return results


# The benchmark.


def our_rows() -> list[Row]:
    rows = [Row("rgb frame", "rgb", "train", d) for d in DECODERS]
    rows += [Row("flow stack L=10", "flow", "train", None)]
    rows += [Row("{clip}-frame rgb clip", "rgb_clip", "train", d) for d in DECODERS]
    rows += [Row("{clip}-frame flow clip", "flow_clip", "train", None)]
    rows += [Row("{views}-view flow stacks", "flow", "test", None)]
    rows += [Row("{views}-view rgb frames", "rgb", "test", d) for d in DECODERS]
    return rows


OURS_COLUMNS = ("sample", "stage", "source", "shape", "samples/s per worker (CPU time)", "CPU ms/sample",
                "wall-clock samples/s", "vs decord", "{workers}-worker DataLoader samples/s")


def measure_ours(root: Path, settings: Settings, workers: int, table: Table) -> None:
    """Time our rows, group by group (a group's variants alternate); each group's rows printed when measured."""
    views = settings.test_positions * 10
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in our_rows():
        groups.setdefault((row.modality, row.stage), []).append(row)
    for (modality, stage), group in groups.items():
        datasets = {row: data_module(root, settings, modality, row.decoder or "decord").make_dataset(stage)
                    for row in group}
        min_samples = 1 if stage == "test" else 3  # a 250-view sample takes about a second
        progress(f"timing {modality} {stage} ({', '.join(row.decoder or 'flow JPEGs' for row in group)}) ...")
        results = compare(datasets, settings, min_samples)
        for row, dataset in datasets.items():
            if stage == "train" and workers > 1:
                batch_size = 2 if modality.endswith("clip") else 8
                results[row].loader_rate = time_loader(dataset, workers, batch_size, settings.seconds * 2)
        decord_rate = next((results[row].cpu_rate for row in group if row.decoder == "decord"), None)
        for row in group:
            result = results[row]
            versus = ratio(result.cpu_rate / decord_rate) if row.decoder == "torchcodec" and decord_rate else None
            table.add(row.name.format(clip=settings.clip, views=views), row.stage, row.decoder or "flow JPEGs",
                      shape(result.shape), result.cpu_rate, 1000 / result.cpu_rate, result.wall_rate, versus,
                      result.loader_rate)


def build_torchvision_dataset(root: Path, settings: Settings, workers: int) -> Dataset:
    from torchvision.datasets import UCF101

    return UCF101(str(root / VIDEO_DIR), str(root / ANNOTATION_DIR), frames_per_clip=settings.clip,
                  step_between_clips=max(1, settings.clip // 4), fold=1, train=True, output_format="TCHW",
                  num_workers=workers)


def measure_torchvision(root: Path, settings: Settings, workers: int, reference: Reference, report: Report) -> None:
    """Ours (decord, torchcodec) against torchvision's UCF101 on the same clips, decode only and with
    our training augmentation; a row printed per condition as it is measured."""
    if reference.missing:
        report.note(f"torchvision.datasets.UCF101 comparison skipped: {reference.missing}.")
        return
    started = time.perf_counter()
    dataset = build_torchvision_dataset(root, settings, workers)
    index_seconds = time.perf_counter() - started
    trained = {decoder: data_module(root, settings, "rgb_clip", decoder).make_dataset("train") for decoder in DECODERS}
    decoded = {decoder: VideoDataset(dataset_.index, "rgb_clip", "train", PassThrough(dataset_.augment.specs),
                                     dataset_.reader, sampling=dataset_.sampling)
               for decoder, dataset_ in trained.items()}
    augment = AugmentClip(trained["decord"].augment)
    report.note(f"torchvision.datasets.UCF101 ({len(dataset)} clips of {settings.clip} frames, fold 1 train): clip "
                f"index built in {significant(index_seconds)} s (excluded below); decodes with {reference.decoder}.")
    table = report.table(
        f"Against torchvision.datasets.UCF101, {settings.clip}-frame clips",
        [f"{settings.clip}-frame rgb clip", "shape", "ours decord samples/s", "ours torchcodec samples/s",
         "torchvision samples/s", "ours decord / torchvision", "ours torchcodec / torchvision",
         "same two ratios, wall clock"])
    for condition, (ours, transform) in {"decode only": (decoded, None), "train augmentation": (trained, augment)}.items():
        dataset.transform = transform
        datasets: dict[str, Dataset] = {f"ours {decoder}": ours_ for decoder, ours_ in ours.items()}
        datasets["torchvision"] = TorchvisionClips(dataset)
        progress(f"timing {settings.clip}-frame clips against torchvision, {condition} ...")
        results = compare(datasets, settings, min_samples=3)
        tv, decord_, torchcodec_ = (results[name] for name in ("torchvision", "ours decord", "ours torchcodec"))
        wall = [decord_.wall_rate / tv.wall_rate, torchcodec_.wall_rate / tv.wall_rate]
        table.add(condition, shape(tv.shape), decord_.cpu_rate, torchcodec_.cpu_rate, tv.cpu_rate,
                  ratio(decord_.cpu_rate / tv.cpu_rate), ratio(torchcodec_.cpu_rate / tv.cpu_rate),
                  Cell(wall, ", ".join(f"{significant(value)}x" for value in wall)))


def run(root: Path, settings: Settings, workers: int, json_path: Path | None) -> None:
    report = Report("loader_speed", machine(), json_path)  # before the data: a bad --json fails at once
    prepare_data(root, settings, workers)
    # One thread everywhere: what each DataLoader worker gets.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    report.note(describe_data(root, data_module(root, settings, "two_stream", "decord")))
    report.note(f"method: main process, 1 thread, samples per CPU second unless marked wall clock; best of "
                f"{settings.rounds} round(s) of {settings.seconds:g} s per variant (variants alternate, same "
                f"items; compare within a row); test rows: {settings.test_positions} positions x 10 crops")
    ours = report.table("Our dataset, per DataLoader worker",
                        [column.format(workers=workers) for column in OURS_COLUMNS])
    measure_ours(root, settings, workers, ours)
    measure_torchvision(root, settings, workers, torchvision_reference(), report)
    report.finish()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, short clips, few views")
    parser.add_argument("--data", type=Path, help="dataset folder to reuse or fill (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader workers of the last column, and of flow extraction (default 2)")
    parser.add_argument("--seconds", type=float, help="seconds per variant and round (default: 4, quick 0.3)")
    parser.add_argument("--rounds", type=int, help="rounds per row (default: 3, quick 1)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.seconds is not None or args.rounds is not None:
        settings = replace(settings, seconds=args.seconds or settings.seconds, rounds=args.rounds or settings.rounds)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.data is not None:
        run(args.data, settings, args.workers, args.json)
        return
    with tempfile.TemporaryDirectory(prefix="loader_speed_") as folder:
        run(Path(folder), settings, args.workers, args.json)


if __name__ == "__main__":
    main()
