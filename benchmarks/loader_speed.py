"""How fast the data side produces training and test samples, per DataLoader worker, and how
many CPU cores a GPU needs to be fed.

Measures samples/s of the project's own dataset (``VideoDataModule.make_dataset``, i.e.
``datamodules.datasets.VideoDataset`` exactly as training builds it) for:

- an RGB frame (2D spatial train sample: decode 1 frame, short side 256, random 224 crop, flip);
- a flow stack, L=10 (2D temporal train sample: 20 JPEGs, crop, flip);
- a 64-frame RGB clip and a 64-field flow clip (3D train samples);
- a 250-view test sample (2D: 25 positions x 10 crops) of a flow stack and of an RGB frame.

RGB is read with the default decoder (torchcodec where it loads, else decord; which
decoder is fastest is ``decode_speed.py``'s question). Each sample is what a worker hands
over: uint8 crops (train) or uint8 positions at their stored size plus the crop boxes (test);
the float conversion runs on the device (``datamodules.batch.finish_batch``).

"Per worker" is the main process with one thread everywhere (torch, OpenCV, decoders), as a
DataLoader worker runs. The main figure is samples per second of this process's CPU time
(``time.process_time``): what a worker does with a core of its own; wall-clock rates are
printed beside it. Each row keeps the fastest of ``--rounds`` rounds of ``--seconds``. The
last column runs the training rows through a DataLoader with ``--workers`` workers.

The bare library call: ``torchvision.datasets.UCF101`` on the same videos and annotation
folder (``fold=1, train=True, output_format="TCHW"``) reading 64-frame clips, against our
64-frame RGB clips, alternating in one run: decode only (ours with its transforms replaced by
a pass-through) and with our training augmentation on both sides (torchvision gets our
``Augment`` as its transform). Building torchvision's clip index is timed apart and excluded.
Which decoder torchvision uses underneath is read from its source and printed (PyAV's
``read_video`` up to torchvision 0.25, torchcodec from 0.26); where it is missing, the
comparison is skipped and the report says why.

CPU cores to feed one GPU (``--gpu-rates FILE``, the ``--json`` of ``model_speed.py`` run on
that GPU): each network's samples/s there (forward + backward for training, forward / 250
for 250-view testing) over a worker's samples/s. Without the file the table is skipped: no
GPU rate is assumed.

Data: a synthetic UCF-101 (XVID .avi at 320x240) with DIS flow in a temporary folder, or
``--data DIR`` (``UCF-101/``, ``ucfTrainTestlist/``, ``flow/``; what is missing there is
generated and kept). Rows print as measured; ``--json FILE`` writes them unrounded.

Run:  python benchmarks/loader_speed.py                  (full, 3-5 minutes on 2 busy cores)
      python benchmarks/loader_speed.py --quick          (smoke run: tiny data, short clips, 2x10 test views)
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
from table import (
    Report,
    Table,
    add_json_option,
    describe_machine,
    progress,
    ratio,
    shape,
    significant,
)
from torch.utils.data import DataLoader, Dataset, RandomSampler

from datamodules.annotations import UCF101
from datamodules.batch import FRAME_KEYS
from datamodules.datamodule import VideoDataModule
from datamodules.datasets import VideoDataset
from datamodules.settings import EvalProtocol, LoaderSettings, Roots
from datamodules.decoding import TorchcodecReader
from datamodules.modality import modality_keys
from datamodules.synthetic import generate
from datamodules.transforms import Augment
from flow.extract import ExtractionConfig, extract_many, list_videos
from flow.meta import read_meta
from models.input_spec import InputSpec, flow_pixels, flow_unit, imagenet_rgb, symmetric_rgb

VIDEO_DIR, ANNOTATION_DIR, FLOW_DIR = "UCF-101", "ucfTrainTestlist", "flow"
Key = TypeVar("Key", bound=Hashable)
Pass = Literal["fwd", "fwd+bwd"]
PAPER_CLIP = 64  # frames of an I3D clip
TEST_VIEWS = 250  # 2D test protocol: 25 positions x 10 crops; a GPU test consumes this many views a video


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


def input_specs(modality: str, clip: int) -> dict[str, InputSpec]:
    """What the papers' networks read for ``modality``: 2D ImageNet RGB frames and L=10 flow stacks in
    pixels, I3D's [-1, 1] RGB and flow clips of ``clip`` frames."""
    specs = {"rgb": imagenet_rgb(), "flow": flow_pixels(10), "rgb_clip": symmetric_rgb(frames=clip),
             "flow_clip": flow_unit(frames=clip)}
    if modality == "two_stream":
        return {"rgb": specs["rgb"], "flow": specs["flow"]}
    return {"flow" if "flow" in modality else "rgb": specs[modality]}


def data_module(root: Path, settings: Settings, modality: str, decoder: str) -> VideoDataModule:
    """The DataModule training would use, its input set as the networks set it; RGB-only modalities get
    no frames root, as in training."""
    frames_root = str(root / FLOW_DIR) if "flow" in modality_keys(modality) else None
    module = VideoDataModule(UCF101(str(root / ANNOTATION_DIR)),
                             Roots(str(root / VIDEO_DIR), frames_root, cache_dir=str(root / "index_cache")),
                             test=EvalProtocol(positions=settings.test_positions), loader=LoaderSettings(decoder=decoder))
    module.set_input_specs(input_specs(modality, settings.clip))
    return module


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


# Our dataset.


def our_rows(decoder: str) -> list[Row]:
    return [Row("rgb frame", "rgb", "train", decoder), Row("flow stack L=10", "flow", "train", None),
            Row("{clip}-frame rgb clip", "rgb_clip", "train", decoder),
            Row("{clip}-field flow clip", "flow_clip", "train", None),
            Row("{views}-view flow stacks", "flow", "test", None),
            Row("{views}-view rgb frames", "rgb", "test", decoder)]


OURS_COLUMNS = ("sample", "stage", "source", "shape (uint8)", "MB per sample", "samples/s per worker",
                "CPU ms/sample", "wall-clock samples/s", "{workers}-worker DataLoader samples/s")


def measure_ours(root: Path, settings: Settings, workers: int, decoder: str, table: Table) -> dict[Row, Result]:
    """Time our rows one by one, each printed when measured."""
    views = settings.test_positions * 10
    measured: dict[Row, Result] = {}
    for row in our_rows(decoder):
        dataset = data_module(root, settings, row.modality, row.decoder or "decord").make_dataset(row.stage)
        progress(f"timing {row.modality} {row.stage} ({row.decoder or 'flow JPEGs'}) ...")
        result = measured[row] = compare({row: dataset}, settings, 1 if row.stage == "test" else 3)[row]
        if row.stage == "train" and workers > 1:
            batch_size = 2 if row.modality.endswith("clip") else 8
            result.loader_rate = time_loader(dataset, workers, batch_size, settings.seconds * 2)
        table.add(row.name.format(clip=settings.clip, views=views), row.stage, row.decoder or "flow JPEGs",
                  shape(result.shape), result.megabytes, result.cpu_rate, 1000 / result.cpu_rate, result.wall_rate,
                  result.loader_rate)
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


TWO_D = ("cnn_m", "resnet50", "googlenet")
FEEDS = ([Feed(f"{net}_{modality}", modality, "train") for modality in ("rgb", "flow") for net in TWO_D]
         + [Feed("i3d_rgb", "rgb_clip", "train"), Feed("i3d_flow", "flow_clip", "train")]
         + [Feed(f"{net}_{modality}", modality, "test") for modality in ("rgb", "flow") for net in TWO_D])


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


def feed_row(feed: Feed, decoder: str) -> Row:
    """Our row that measured the sample feeding ``feed``."""
    return next(row for row in our_rows(decoder) if (row.modality, row.stage) == (feed.modality, feed.stage))


def add_cores_needed(report: Report, settings: Settings, measured: Mapping[Row, Result], decoder: str,
                     gpu_rates_path: Path | None) -> None:
    if gpu_rates_path is None:
        report.note("CPU cores to feed a GPU: skipped (no --gpu-rates FILE: run benchmarks/model_speed.py --json "
                    "FILE on the GPU first; no GPU rate is assumed)")
        return
    device, rates = read_gpu_rates(gpu_rates_path)
    views = settings.test_positions * 10
    smaller = settings.clip != PAPER_CLIP or views != TEST_VIEWS
    quick = " (samples smaller than these networks take: smoke numbers only)" if smaller else ""
    table = report.table(f"CPU cores needed to feed one {device}: GPU samples/s / per-worker samples/s{quick}",
                         ["network", "sample", "GPU pass", "GPU samples/s", "per-worker samples/s", "cores"])
    for feed in FEEDS:
        rate = rates.get((feed.network, feed.gpu_pass))
        if rate is None:
            continue  # not in the model_speed run
        row = feed_row(feed, decoder)
        # A 2D test consumes a video's views: its samples are videos, views/s / views per video.
        per_sample = rate / views if feed.stage == "test" else rate
        worker = measured[row].cpu_rate
        table.add(feed.network, f"{row.name.format(clip=settings.clip, views=views)} ({row.stage}, "
                                f"{row.decoder or 'flow JPEGs'})", feed.gpu_pass, per_sample, worker,
                  per_sample / worker)


def build_torchvision_dataset(root: Path, settings: Settings, workers: int) -> Dataset:
    from torchvision.datasets import UCF101

    return UCF101(str(root / VIDEO_DIR), str(root / ANNOTATION_DIR), frames_per_clip=settings.clip,
                  step_between_clips=max(1, settings.clip // 4), fold=1, train=True, output_format="TCHW",
                  num_workers=workers)


def measure_torchvision(root: Path, settings: Settings, workers: int, decoder: str, reference: Reference,
                        report: Report) -> None:
    """Ours against torchvision's UCF101 on the same clips, decode only and with our training
    augmentation; a row printed per condition as it is measured."""
    if reference.missing:
        report.note(f"torchvision.datasets.UCF101 comparison skipped: {reference.missing}.")
        return
    started = time.perf_counter()
    dataset = build_torchvision_dataset(root, settings, workers)
    index_seconds = time.perf_counter() - started
    trained = data_module(root, settings, "rgb_clip", decoder).make_dataset("train")
    decoded = VideoDataset(trained.index, "rgb_clip", "train", PassThrough(trained.augment.specs), trained.reader,
                           sampling=trained.sampling)
    augment = AugmentClip(trained.augment)
    report.note(f"torchvision.datasets.UCF101 ({len(dataset)} clips of {settings.clip} frames, fold 1 train): clip "
                f"index built in {significant(index_seconds)} s (excluded below); decodes with {reference.decoder}.")
    table = report.table(
        f"Against torchvision.datasets.UCF101, {settings.clip}-frame clips",
        [f"{settings.clip}-frame rgb clip", "shape", f"ours ({decoder}) samples/s", "torchvision samples/s",
         "ours / torchvision", "same ratio, wall clock"])
    for condition, (ours, transform) in {"decode only": (decoded, None), "train augmentation": (trained, augment)}.items():
        dataset.transform = transform
        progress(f"timing {settings.clip}-frame clips against torchvision, {condition} ...")
        results = compare({"ours": ours, "torchvision": TorchvisionClips(dataset)}, settings, min_samples=3)
        mine, tv = results["ours"], results["torchvision"]
        table.add(condition, shape(tv.shape), mine.cpu_rate, tv.cpu_rate, ratio(mine.cpu_rate / tv.cpu_rate),
                  ratio(mine.wall_rate / tv.wall_rate))


def run(root: Path, settings: Settings, workers: int, json_path: Path | None, gpu_rates_path: Path | None) -> None:
    problem = torchcodec_problem()
    decoder = "torchcodec" if problem is None else "decord"
    report = Report("loader_speed", machine([decoder]), json_path)  # before the data: a bad --json fails at once
    if gpu_rates_path is not None:
        read_gpu_rates(gpu_rates_path)  # a bad file fails before anything is measured
    if problem is not None:
        report.note(f"RGB read with decord: torchcodec does not load here: {problem}")
    prepare_data(root, settings, workers)
    # One thread everywhere: what each DataLoader worker gets.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    report.note(describe_data(root, data_module(root, settings, "two_stream", "decord")))
    report.note(f"method: main process, 1 thread, samples per CPU second unless marked wall clock; best of "
                f"{settings.rounds} round(s) of {settings.seconds:g} s per row; test rows: "
                f"{settings.test_positions} positions x 10 crops; samples as workers hand them over (uint8)")
    ours = report.table("Our dataset, per DataLoader worker", [column.format(workers=workers) for column in OURS_COLUMNS])
    measured = measure_ours(root, settings, workers, decoder, ours)
    add_cores_needed(report, settings, measured, decoder, gpu_rates_path)
    measure_torchvision(root, settings, workers, decoder, torchvision_reference(), report)
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
                        help="the --json of benchmarks/model_speed.py run on the GPU to feed (without it the "
                             "cores table is skipped)")
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
