"""How fast the data side produces training and test samples, per DataLoader worker, before
and after the samples left the workers as uint8 (issue 11).

Measures samples/s of the project's own dataset (``VideoDataModule.make_dataset``, i.e.
``datamodules.datasets.VideoDataset`` exactly as training builds it) for:

- an RGB frame (2D spatial train sample: decode 1 frame, short side 256, random 224 crop,
  flip), with the decord and the torchcodec reader;
- a flow stack, L=10 (2D temporal train sample: 20 JPEGs, crop, flip);
- a 64-frame RGB clip (3D), decord and torchcodec;
- a 64-field flow clip (3D);
- a 250-view test sample (2D: 25 positions x 10 crops) of a flow stack and of an RGB
  frame (decord and torchcodec).

Each row is timed two ways on the same items, alternating:

- *after*: the item alone (``dataset[i]``), what a worker does now: uint8 crops (train) or
  uint8 positions at their stored size plus the crop boxes (test); the float conversion
  runs on the device (``datamodules.batch.finish_batch``);
- *before*: the item finished on the host as the worker used to: ``dataset.finish``
  on a batch of one (``default_collate``), and for a test item all its views materialised
  as float32 (``dataset.finish(collate_test([item]))[key].materialise()``).

"Per worker" is the main process with one thread everywhere (torch, OpenCV, decoders),
as a DataLoader worker runs. The main figure is samples per second of this process's CPU
time (``time.process_time``, all its threads): what a worker does with a core of its own.
It moves less than wall clock when other processes share the machine, but it still moves
(they compete for caches and memory bandwidth), so absolute numbers of rows timed minutes
apart can differ by up to 2x on a busy machine; wall-clock rates are printed beside it.
The variants of one row (before, after; decord, torchcodec; torchvision) alternate over
``--rounds`` rounds of ``--seconds`` each on the same items in the same order, and each
keeps its fastest round: compare variants within a row, where the ratios are printed. The
last column runs the training rows (after) through a DataLoader with ``--workers`` workers
(wall clock, warm-up batches excluded): on a loaded machine with few cores it says more
about the load than about the loader.

CPU cores to feed one GPU: the GPU's samples/s for each network of
``benchmarks/model_speed.py`` that these samples feed (forward + backward for training,
forward / 250 for 250-view testing) over a worker's samples/s, before and after. GPU rates
come from ``--gpu-rates FILE``, the ``--json`` of ``model_speed.py`` run on the GPU; without
it, I3D RGB's measured H200 rate (``H200_I3D_RGB``) and, for the other networks, an
estimate from it scaled by GFLOPs (labelled as such).

Outside reference: ``torchvision.datasets.UCF101`` on the same videos and annotation
folder (``fold=1, train=True, output_format="TCHW"``) reading 64-frame clips, against our
64-frame RGB clips, twice: decode only (both give uint8 (64, 3, H, W) at the video's size;
ours is the dataset with its transforms replaced by a pass-through) and with our training
augmentation on both sides (torchvision gets our ``Augment`` as its transform: uint8 crops,
as our workers now give). Building torchvision's clip index (it opens every video under the
root) is timed apart and excluded from its rate. Which decoder torchvision uses underneath
is read from its source and printed: ``torchvision.io.read_video`` (PyAV) up to torchvision
0.25; torchcodec from 0.26, which removed ``read_video`` and ``VideoReader`` from
``torchvision.io``. Where the decoder torchvision's UCF101 needs is missing (torchcodec not
installed or its FFmpeg libraries missing, or a ``read_video`` that this torchvision lacks)
the comparison is skipped and the report says why.

torchcodec is optional (the ``[torchcodec]`` extra plus a system FFmpeg): where it does not
load, its rows are skipped with a note naming the reason, and the rest is measured.

Each table row is printed as soon as it is measured (``benchmarks/table.py``), rates and
times at 3 significant digits; ``--json FILE`` writes the tables unrounded with the machine.

Data: a synthetic UCF-101 (XVID .avi at 320x240, ``datamodules.synthetic.generate``) with
DIS flow (``flow.extract.extract_many``) in a temporary folder, or ``--data DIR``: a
folder holding ``UCF-101/``, ``ucfTrainTestlist/`` and ``flow/`` (the frames root); what is
missing there is generated or extracted and kept, so a second run reuses it.

Run:  python benchmarks/loader_speed.py                  (full, 4-6 minutes on 2 busy cores)
      python benchmarks/loader_speed.py --quick          (smoke run: tiny data, short clips, 2x10 test views)
      python benchmarks/loader_speed.py --data /tmp/ucf  (keep the data for the next run)
      python benchmarks/loader_speed.py --gpu-rates gpu.json --json loader.json
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import tempfile
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import decord
import numpy as np
import torch
import torchvision
from model_speed import NETWORKS, gflops_per_sample, input_shapes
from table import (
    Cell,
    Report,
    Table,
    add_json_option,
    describe_machine,
    progress,
    ratio,
    shape,
    significant,
)
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate

from datamodules.annotations import UCF101
from datamodules.batch import FRAME_KEYS, collate_test
from datamodules.datamodule import VideoDataModule
from datamodules.datasets import VideoDataset
from datamodules.decoding import TorchcodecReader
from datamodules.modality import modality_keys
from datamodules.synthetic import generate
from datamodules.transforms import Augment
from flow.extract import ExtractionConfig, extract_many, list_videos
from flow.meta import read_meta
from models.input_spec import InputSpec

VIDEO_DIR, ANNOTATION_DIR, FLOW_DIR = "UCF-101", "ucfTrainTestlist", "flow"
DECODERS = ("decord", "torchcodec")
PATHS = ("before", "after")  # the worker finishing samples on the host (float32), or shipping uint8
Key = TypeVar("Key", bound=Hashable)
Pass = Literal["fwd", "fwd+bwd"]
PAPER_CLIP = 64  # frames of an I3D clip
TEST_VIEWS = 250  # 2D test protocol: 25 positions x 10 crops; a GPU test consumes this many views a video
# One H200, bf16-mixed, channels_last_3d, batch 8: an I3D RGB training step took 0.080 s (README, GPU
# settings; the bare network's forward + backward 9.4 ms a clip): 100 clips/s.
H200_I3D_RGB = 100.0
GPU_DEVICE = "NVIDIA H200"


def torchcodec_problem() -> str | None:
    """Why our torchcodec reader cannot decode here (not installed, FFmpeg libraries missing, too old), or None."""
    try:
        TorchcodecReader()
    except ImportError as error:
        return str(error)
    return None


def torchcodec_import_problem() -> str | None:
    """Why torchcodec's decoders do not import here (what torchvision's video datasets need), or None."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, RuntimeError, OSError) as error:  # RuntimeError/OSError: its FFmpeg libraries do not load
        return f"{type(error).__name__}: {error}"
    return None


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


FULL = Settings(classes=4, videos_per_class=6, frames=96, clip=PAPER_CLIP, test_positions=25, seconds=2.0, rounds=2,
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
    megabytes: float  # the sample's frames (rgb, flow) in MB: what a worker hands over
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


def machine(decoders: Sequence[str]) -> dict[str, object]:
    torchcodec = "not loadable"
    if "torchcodec" in decoders:
        import torchcodec as module

        torchcodec = module.__version__
    return describe_machine(torchvision=torchvision.__version__, decord=decord.__version__,
                            torchcodec=torchcodec, opencv=cv2.__version__)


# Datasets.


def data_module(root: Path, settings: Settings, modality: str, decoder: str) -> VideoDataModule:
    """The DataModule training would use; RGB-only modalities get no frames root, as in training."""
    frames_root = str(root / FLOW_DIR) if "flow" in modality_keys(modality) else None
    return VideoDataModule(UCF101(str(root / ANNOTATION_DIR)), video_root=str(root / VIDEO_DIR),
                           frames_root=frames_root, modality=modality, frames=settings.clip,
                           test_positions=settings.test_positions, decoder=decoder, cache_dir=str(root / "index_cache"))


class HostFinished(Dataset):
    """The worker's work before samples left it as uint8: the item finished on the host, as a
    batch of one; a test item's views all materialised as float32 (V, ...)."""

    def __init__(self, dataset: VideoDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.dataset[i]
        if self.dataset.stage == "test":
            batch = self.dataset.finish(collate_test([item]))
            return {key: batch[key].materialise()[0] for key in FRAME_KEYS if key in batch}
        batch = self.dataset.finish(default_collate([item]))
        return {key: batch[key][0] for key in FRAME_KEYS if key in batch}


class PassThrough:
    """Stands in for ``Augment`` in a ``VideoDataset``: hands the decoded uint8 (T, 3, H, W)
    clip on untouched, so the dataset's own reading path is timed without transforms."""

    def __init__(self, specs: Mapping[str, InputSpec]):
        self.specs = dict(specs)

    def __call__(self, frames: Mapping[str, torch.Tensor], flow_bound: float = 0.0,
                 rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        return {key: clip[0] for key, clip in frames.items()}


class AugmentClip:
    """Our training augmentation (the worker's half: crop, flip) as a torchvision transform: uint8
    (T, 3, H, W) -> uint8 (T, 3, 224, 224)."""

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
    ``get_clip_source``), and whether what it needs is installed and loads."""
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
        problem = torchcodec_import_problem()
        if problem is not None:
            return Reference(decoder, f"torchvision {version} decodes its video datasets with torchcodec, which "
                                      f"does not load here: {problem}")
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


def frames_of(sample: object) -> list[torch.Tensor]:
    """The sample's frame tensors (rgb, flow): what sets its size."""
    if isinstance(sample, torch.Tensor):
        return [sample]
    return [value for key, value in sample.items() if key in FRAME_KEYS]


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
    results = {}
    for name, dataset in datasets.items():  # warm-up
        frames = frames_of(dataset[order[0]])
        results[name] = Result(tuple(frames[0].shape), sum(f.nbytes for f in frames) / 1e6)
    for _ in range(settings.rounds):
        for name, dataset in datasets.items():
            cpu_rate, wall_rate = time_items(dataset, order, settings.seconds, min_samples)
            result = results[name]
            result.cpu_rate, result.wall_rate = max(result.cpu_rate, cpu_rate), max(result.wall_rate, wall_rate)
    return results


# Our dataset, before and after.


def our_rows(decoders: Sequence[str]) -> list[Row]:
    rows = [Row("rgb frame", "rgb", "train", d) for d in decoders]
    rows += [Row("flow stack L=10", "flow", "train", None)]
    rows += [Row("{clip}-frame rgb clip", "rgb_clip", "train", d) for d in decoders]
    rows += [Row("{clip}-field flow clip", "flow_clip", "train", None)]
    rows += [Row("{views}-view flow stacks", "flow", "test", None)]
    rows += [Row("{views}-view rgb frames", "rgb", "test", d) for d in decoders]
    return rows


OURS_COLUMNS = ("sample", "stage", "source", "shape before (float32) / after (uint8)", "MB per sample before / after",
                "before samples/s per worker", "after samples/s per worker", "after / before",
                "before CPU ms/sample", "after CPU ms/sample", "wall-clock samples/s before / after",
                "after vs decord", "{workers}-worker DataLoader samples/s (after)")


@dataclass
class Measured:
    """A row's two paths."""

    before: Result
    after: Result


def measure_ours(root: Path, settings: Settings, workers: int, decoders: Sequence[str],
                 table: Table) -> dict[Row, Measured]:
    """Time our rows, group by group (a group's variants, both paths of every source, alternate); each
    group's rows printed when measured."""
    views = settings.test_positions * 10
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in our_rows(decoders):
        groups.setdefault((row.modality, row.stage), []).append(row)
    measured: dict[Row, Measured] = {}
    for (modality, stage), group in groups.items():
        datasets: dict[tuple[Row, str], Dataset] = {}
        for row in group:
            dataset = data_module(root, settings, modality, row.decoder or "decord").make_dataset(stage)
            datasets[row, "before"], datasets[row, "after"] = HostFinished(dataset), dataset
        min_samples = 1 if stage == "test" else 3  # a 250-view sample finished on the host takes about a second
        progress(f"timing {modality} {stage} ({', '.join(row.decoder or 'flow JPEGs' for row in group)}; "
                 "before and after) ...")
        results = compare(datasets, settings, min_samples)
        for row in group:
            measured[row] = Measured(results[row, "before"], results[row, "after"])
            if stage == "train" and workers > 1:
                batch_size = 2 if modality.endswith("clip") else 8
                measured[row].after.loader_rate = time_loader(datasets[row, "after"], workers, batch_size,
                                                              settings.seconds * 2)
        decord_rate = next((measured[row].after.cpu_rate for row in group if row.decoder == "decord"), None)
        for row in group:
            before, after = measured[row].before, measured[row].after
            versus = ratio(after.cpu_rate / decord_rate) if row.decoder == "torchcodec" and decord_rate else None
            wall = [before.wall_rate, after.wall_rate]
            table.add(row.name.format(clip=settings.clip, views=views), row.stage, row.decoder or "flow JPEGs",
                      Cell([list(before.shape), list(after.shape)], f"{shape(before.shape).text} / "
                                                                    f"{shape(after.shape).text}"),
                      Cell([before.megabytes, after.megabytes],
                           f"{significant(before.megabytes)} / {significant(after.megabytes)}"),
                      before.cpu_rate, after.cpu_rate, ratio(after.cpu_rate / before.cpu_rate),
                      1000 / before.cpu_rate, 1000 / after.cpu_rate,
                      Cell(wall, " / ".join(significant(value) for value in wall)), versus, after.loader_rate)
    return measured


# CPU cores to feed one GPU.


@dataclass(frozen=True)
class Feed:
    """A network of ``benchmarks/model_speed.py`` and the sample kind that feeds it in one stage."""

    network: str
    modality: str
    stage: str

    @property
    def gpu_pass(self) -> Pass:
        return "fwd+bwd" if self.stage == "train" else "fwd"


TWO_D = (("cnn_m", "CNN-M-2048"), ("resnet50", "ResNet-50"), ("googlenet", "GoogLeNet"))
FEEDS = ([Feed(f"{net}_{modality}", modality, "train") for modality in ("rgb", "flow") for net, _ in TWO_D]
         + [Feed("i3d_rgb", "rgb_clip", "train"), Feed("i3d_flow", "flow_clip", "train")]
         + [Feed(f"{net}_{modality}", modality, "test") for modality in ("rgb", "flow") for net, _ in TWO_D])


@dataclass(frozen=True)
class GpuRate:
    """A network's samples/s on one GPU in one pass, and where the number comes from."""

    samples_per_s: float
    source: str


def gflops(network: str) -> float:
    """Forward GFLOPs per sample at the paper's input size (model_speed's count), built on the meta device."""
    net = NETWORKS[network]
    with torch.device("meta"):
        model = net.build(net.default_classes)
    return gflops_per_sample(model, input_shapes(net, model, quick=False))


def read_gpu_rates(path: Path) -> tuple[str, dict[tuple[str, Pass], float]]:
    """(device, {(network, pass): samples/s}) from the ``--json`` of a ``model_speed.py`` run on a GPU."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"--gpu-rates: cannot read {path}: {error}") from error
    columns = {"fwd": "cuda fwd samples/s", "fwd+bwd": "cuda fwd+bwd samples/s"}
    tables = [t for t in document.get("tables", []) if set(columns.values()) <= set(t.get("columns", []))]
    if document.get("benchmark") != "model_speed" or not tables:
        raise SystemExit(f"--gpu-rates: {path} is not the --json of a benchmarks/model_speed.py run on a GPU "
                         f"(no table with the columns {', '.join(columns.values())})")
    rates = {(row["network"], gpu_pass): float(row[column]) for row in tables[0]["rows"]
             for gpu_pass, column in columns.items() if row.get(column)}
    return str(document.get("machine", {}).get("device", "GPU")), rates


def gpu_rates(feeds: Sequence[Feed], path: Path | None) -> dict[tuple[str, Pass], GpuRate]:
    """Each feed's GPU rate: measured (``path``, or I3D RGB's H200 rate), else estimated from the
    reference network's measured forward + backward rate scaled by GFLOPs (a forward: 3x)."""
    device, measured = read_gpu_rates(path) if path is not None else (GPU_DEVICE, {})
    sources = {key: f"measured, {device} ({path.name})" for key in measured}
    reference_key = ("i3d_rgb", "fwd+bwd")
    if reference_key not in measured:
        device, measured[reference_key] = GPU_DEVICE, H200_I3D_RGB
        sources[reference_key] = f"measured, {GPU_DEVICE} training step"
    reference_rate, reference_gflops = measured[reference_key], gflops("i3d_rgb")
    rates = {}
    for feed in feeds:
        key = (feed.network, feed.gpu_pass)
        if key in measured:
            rates[key] = GpuRate(measured[key], sources[key])
            continue
        train = reference_rate * reference_gflops / gflops(feed.network)
        forward = ", fwd = 3x fwd+bwd" if feed.gpu_pass == "fwd" else ""
        rates[key] = GpuRate(train if feed.gpu_pass == "fwd+bwd" else 3 * train,
                             f"estimate: I3D RGB on {device} x GFLOPs ratio{forward}")
    return rates


def feed_row(feed: Feed, decoders: Sequence[str]) -> Row:
    """Our row that measured the sample feeding ``feed``: with RGB, the default decoder (auto: torchcodec
    where it loads)."""
    decoder = None if "flow" in feed.modality else ("torchcodec" if "torchcodec" in decoders else "decord")
    return next(row for row in our_rows(decoders)
                if (row.modality, row.stage, row.decoder) == (feed.modality, feed.stage, decoder))


def add_cores_needed(report: Report, settings: Settings, measured: Mapping[Row, Measured], decoders: Sequence[str],
                     gpu_rates_path: Path | None) -> None:
    views = settings.test_positions * 10
    rates = gpu_rates(FEEDS, gpu_rates_path)
    smaller = settings.clip != PAPER_CLIP or views != TEST_VIEWS
    quick = " (samples smaller than these networks take: smoke numbers only)" if smaller else ""
    table = report.table(
        f"CPU cores needed to feed one GPU: GPU samples/s / per-worker samples/s{quick}",
        ["network", "sample", "GPU pass", "GPU samples/s", "GPU rate", "per-worker samples/s before / after",
         "cores before", "cores after"])
    for feed in FEEDS:
        row = feed_row(feed, decoders)
        gpu = rates[feed.network, feed.gpu_pass]
        # A 2D test consumes a video's views: its samples are videos, views/s / views per video.
        per_sample = gpu.samples_per_s / views if feed.stage == "test" else gpu.samples_per_s
        before, after = measured[row].before.cpu_rate, measured[row].after.cpu_rate
        table.add(feed.network, f"{row.name.format(clip=settings.clip, views=views)} ({row.stage}, "
                                f"{row.decoder or 'flow JPEGs'})", feed.gpu_pass, per_sample, gpu.source,
                  Cell([before, after], f"{significant(before)} / {significant(after)}"),
                  per_sample / before, per_sample / after)


def build_torchvision_dataset(root: Path, settings: Settings, workers: int) -> Dataset:
    from torchvision.datasets import UCF101

    return UCF101(str(root / VIDEO_DIR), str(root / ANNOTATION_DIR), frames_per_clip=settings.clip,
                  step_between_clips=max(1, settings.clip // 4), fold=1, train=True, output_format="TCHW",
                  num_workers=workers)


def measure_torchvision(root: Path, settings: Settings, workers: int, decoders: Sequence[str], reference: Reference,
                        report: Report) -> None:
    """Ours (each of ``decoders``) against torchvision's UCF101 on the same clips, decode only and with
    our training augmentation; a row printed per condition as it is measured."""
    if reference.missing:
        report.note(f"torchvision.datasets.UCF101 comparison skipped: {reference.missing}.")
        return
    started = time.perf_counter()
    dataset = build_torchvision_dataset(root, settings, workers)
    index_seconds = time.perf_counter() - started
    trained = {decoder: data_module(root, settings, "rgb_clip", decoder).make_dataset("train") for decoder in decoders}
    decoded = {decoder: VideoDataset(dataset_.index, "rgb_clip", "train", PassThrough(dataset_.augment.specs),
                                     dataset_.reader, sampling=dataset_.sampling)
               for decoder, dataset_ in trained.items()}
    augment = AugmentClip(trained["decord"].augment)
    report.note(f"torchvision.datasets.UCF101 ({len(dataset)} clips of {settings.clip} frames, fold 1 train): clip "
                f"index built in {significant(index_seconds)} s (excluded below); decodes with {reference.decoder}.")
    table = report.table(
        f"Against torchvision.datasets.UCF101, {settings.clip}-frame clips",
        [f"{settings.clip}-frame rgb clip", "shape", *(f"ours {decoder} samples/s" for decoder in decoders),
         "torchvision samples/s", *(f"ours {decoder} / torchvision" for decoder in decoders),
         "same ratios, wall clock"])
    for condition, (ours, transform) in {"decode only": (decoded, None), "train augmentation": (trained, augment)}.items():
        dataset.transform = transform
        datasets: dict[str, Dataset] = {f"ours {decoder}": ours_ for decoder, ours_ in ours.items()}
        datasets["torchvision"] = TorchvisionClips(dataset)
        progress(f"timing {settings.clip}-frame clips against torchvision, {condition} ...")
        results = compare(datasets, settings, min_samples=3)
        tv = results["torchvision"]
        mine = [results[f"ours {decoder}"] for decoder in decoders]
        wall = [result.wall_rate / tv.wall_rate for result in mine]
        table.add(condition, shape(tv.shape), *(result.cpu_rate for result in mine), tv.cpu_rate,
                  *(ratio(result.cpu_rate / tv.cpu_rate) for result in mine),
                  Cell(wall, ", ".join(f"{significant(value)}x" for value in wall)))


def run(root: Path, settings: Settings, workers: int, json_path: Path | None, gpu_rates_path: Path | None) -> None:
    problem = torchcodec_problem()
    decoders = DECODERS if problem is None else tuple(d for d in DECODERS if d != "torchcodec")
    report = Report("loader_speed", machine(decoders), json_path)  # before the data: a bad --json fails at once
    if gpu_rates_path is not None:
        read_gpu_rates(gpu_rates_path)  # a bad file fails before anything is measured
    if problem is not None:
        report.note(f"torchcodec rows skipped: {problem}")
    prepare_data(root, settings, workers)
    # One thread everywhere: what each DataLoader worker gets.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    report.note(describe_data(root, data_module(root, settings, "two_stream", "decord")))
    report.note(f"method: main process, 1 thread, samples per CPU second unless marked wall clock; best of "
                f"{settings.rounds} round(s) of {settings.seconds:g} s per variant (variants alternate, same "
                f"items; compare within a row); test rows: {settings.test_positions} positions x 10 crops; "
                "before: item + dataset.finish on the host (test: every view materialised as float32), "
                "after: the uint8 item alone (finished on the device)")
    ours = report.table("Our dataset, per DataLoader worker, before and after",
                        [column.format(workers=workers) for column in OURS_COLUMNS])
    measured = measure_ours(root, settings, workers, decoders, ours)
    add_cores_needed(report, settings, measured, decoders, gpu_rates_path)
    measure_torchvision(root, settings, workers, decoders, torchvision_reference(), report)
    report.finish()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, short clips, few views")
    parser.add_argument("--data", type=Path, help="dataset folder to reuse or fill (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader workers of the last column, and of flow extraction (default 2)")
    parser.add_argument("--seconds", type=float, help="seconds per variant and round (default: 2, quick 0.3)")
    parser.add_argument("--rounds", type=int, help="rounds per row (default: 2, quick 1)")
    parser.add_argument("--gpu-rates", type=Path, metavar="FILE",
                        help="the --json of benchmarks/model_speed.py run on the GPU to feed (default: I3D RGB's "
                             f"H200 rate, {H200_I3D_RGB:g} clips/s, the other networks estimated from it)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.seconds is not None or args.rounds is not None:
        settings = replace(settings, seconds=args.seconds or settings.seconds, rounds=args.rounds or settings.rounds)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.data is not None:
        run(args.data, settings, args.workers, args.json, args.gpu_rates)
        return
    with tempfile.TemporaryDirectory(prefix="loader_speed_") as folder:
        run(Path(folder), settings, args.workers, args.json, args.gpu_rates)


if __name__ == "__main__":
    main()
