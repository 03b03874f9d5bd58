"""Scoring a user's video exactly as ``cli.py test`` scores a test video.

``VideoScorer`` takes a loaded model (``inference.load.Loaded``: the module and its recipe)
and a video file. Nothing here re-implements the data path; it is the datamodules' own:

1. flow, for a model that reads it, is computed from the raw video with the settings the
   training flow was extracted with (``FlowSettings.extraction_config()``) by the extractor
   itself, into memory (``flow.memory_store.MemoryFlowStore``): the same quantization and
   JPEG round trip as stored flow, read back through the store interface;
2. a one-video ``VideoIndex`` (counts as ``datamodules.index`` takes them: meta.json's for
   flow, the decoder's otherwise) and a ``VideoDataset`` in stage "test" with the recipe's
   ``Augment``, sampling and protocol give the test sample;
3. ``collate_test``, the move to the device and ``finish_batch`` make it a test batch, as
   Lightning's test loop and the datamodule's ``on_after_batch_transfer`` do;
4. the module's own ``video_scores`` (softmax averaged over the views) scores it; a
   two-stream model adds ``fusion``, its ``fuse`` (the ``fusion_weights`` average).

So ``score`` of a test-split video equals that video's row of the test's score file
(``tests/test_scoring.py`` pins it for spatial, temporal, two-stream and I3D models).

A video shorter than one stack or clip is sampled as the test samples it (indices loop
back to the start) and ``VideoScores.notes`` says so. Flow that cannot be computed as the
model's was (its settings unknown: another tool's flow; an algorithm this installation
lacks; RAFT without its weights file) is refused when the scorer is built
(``FlowUnavailable``), never replaced by other flow. The one substitution allowed is the
engine: ``tvl1`` runs as ``tvl1_torch`` (OpenCV's TV-L1 in PyTorch, the same parameters)
on a CUDA device, or when asked (``engine="tvl1_torch"``); ``VideoScores.flow_engine``
says which ran. On a CUDA device an algorithm with a batched form (``tvl1_torch``, ``raft``)
takes a video's pairs ``CUDA_FLOW_BATCH`` at a time (``flow/batched.py``: the same files).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import torch
from pytorch_lightning.utilities import move_data_to_device

from datamodules.batch import collate_test, finish_batch
from datamodules.datamodule import protocol_crops
from datamodules.datasets import DataFailureError, VideoDataset
from datamodules.decoding import FrameReader, RawFrameReader, VideoDecodeError, create_reader
from datamodules.index import VideoIndex, probe_num_frames
from datamodules.modality import infer_modality, is_clip, modality_keys
from datamodules.sampling import Sampling
from datamodules.settings import EvalProtocol
from datamodules.transforms import Augment
from flow.algorithms import ALGORITHMS, FlowAlgorithm
from flow.av_compat import frames_per_second, open_input
from flow.extraction_config import ExtractionConfig
from flow.frames import VideoError
from flow.memory_store import MemoryFlowStore

if TYPE_CHECKING:
    from inference.load import Loaded

# The video's name in its in-memory store and one-video index.
VIDEO_ID = "video"
# Frame pairs per flow call on a GPU (flow/batched.py; the files are the per-pair path's).
CUDA_FLOW_BATCH = 32
# tvl1 may run as this engine: OpenCV's TV-L1 in PyTorch, same parameters (flow/tvl1_torch.py).
TVL1_ENGINES = {"tvl1": "tvl1_torch"}


# What a video that cannot be read raises, with the decoder's reason: extraction's decoder,
# the RGB readers', and the test dataset's (which names the file and wraps either).
VIDEO_ERRORS: tuple[type[Exception], ...] = (VideoError, VideoDecodeError, DataFailureError)


class FlowUnavailable(ValueError):
    """The model's flow cannot be computed here as it was for training; the message says why."""


@dataclass
class VideoScores:
    """A video's per-class probabilities under a test protocol.

    Args:
        scores: per stream name (``rgb``/``flow`` for one-stream modules, ``spatial`` and
            ``temporal`` for two-stream ones) the softmax averaged over the views, float32
            (C,); two-stream models add ``fusion`` (their ``fusion_weights`` average).
        protocol: the views actually used: ``positions`` (2D) or ``clips`` (3D; ``whole_video``),
            ``crops``, ``views`` (their product).
        notes: what the output should say (a video shorter than one clip, the flow engine).
        flow_engine: the flow algorithm that ran (and its device); None without flow.
    """

    scores: dict[str, np.ndarray]
    protocol: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    flow_engine: str | None = None


@dataclass
class PreparedVideo:
    """A video ready to be sampled: its in-memory flow (and frames) and its counts.

    ``frames`` counts the frames a sample's indices refer to: the flow's (step-sampled)
    frames for a model reading flow, the decoder's frames otherwise; ``fps`` is their rate.
    """

    path: Path
    store: MemoryFlowStore | None
    frames: int
    fps: float
    step: int = 1
    notes: list[str] = field(default_factory=list)


class _SpanReader:
    """Frames ``first ..`` of a video through another reader: frame k is the video's ``first + k``
    (a window's RGB, while its flow is a span of the in-memory store). What ``VideoDataset``
    calls of a ``FrameReader``."""

    def __init__(self, reader: FrameReader, first: int, count: int):
        self.reader, self.first, self.count = reader, first, count
        self.worker_start_method = reader.worker_start_method

    def num_frames(self, path: str | Path) -> int:
        return self.count

    def read_frames(self, path: str | Path, indices: Sequence[int]) -> np.ndarray:
        return self.reader.read_frames(path, [self.first + int(k) for k in indices])


class VideoScorer:
    """Scores videos with a loaded model as ``cli.py test`` scores its test videos (module docstring).

    Args:
        loaded: the model and its recipe (``inference.load.load_checkpoint`` / ``load_config``).
        device: where the network runs (and ``tvl1_torch``/``raft`` flow); the module is moved there.
        protocol: the test views; None: the recipe's (the protocol the checkpoint was tested with).
        engine: the flow algorithm to run; None: the recipe's, with ``tvl1`` as ``tvl1_torch``
            on a CUDA device. Only ``tvl1_torch`` may stand in for ``tvl1``.
        threads: flow threads (``ExtractionConfig.threads``; 0: the usable cores).

    Raises:
        FlowUnavailable: the model reads flow that cannot be computed here as it was in training.
    """

    def __init__(self, loaded: Loaded, device: str | torch.device = "cpu", protocol: EvalProtocol | None = None,
                 engine: str | None = None, threads: int = 0) -> None:
        self.loaded, self.recipe = loaded, loaded.recipe
        self.device = torch.device(device)
        self.module = loaded.module.to(self.device).eval()
        self.protocol = protocol or self.recipe.test
        self.specs = {key: spec for key, spec in self.module.input_specs.items() if spec is not None}
        self.modality = infer_modality(self.specs)
        self.keys = modality_keys(self.modality)
        augment = self.recipe.augment
        crops = protocol_crops(self.protocol, self.modality, bool(augment.flip))
        self.augment = Augment("test", self.specs, augment, test_crops=crops, stacking=self.recipe.sampling.stacking)
        self.sampling = Sampling(self.protocol.positions, self.protocol.clips, self.recipe.sampling.stride,
                                 self.protocol.whole_video)
        self.rawframes = "rgb" in self.keys and self.recipe.decoder == "rawframes"
        self.reader = create_reader(self.recipe.decoder) if "rgb" in self.keys and not self.rawframes else None
        self.extraction: ExtractionConfig | None = None
        self.algorithms: list[FlowAlgorithm] = []
        self.flow_engine: str | None = None
        self.engine_note: str | None = None
        if "flow" in self.keys or self.rawframes:
            self._set_flow(engine, threads)

    # Flow.

    def _set_flow(self, engine: str | None, threads: int) -> None:
        flow = self.recipe.flow
        if flow is None:
            raise FlowUnavailable("the checkpoint's recipe records no flow settings for a model that reads flow")
        try:
            config = flow.extraction_config(threads=threads, rgb=self.rawframes)
        except ValueError as error:  # unknown settings (another tool's flow), an algorithm not installed
            raise FlowUnavailable(f"cannot compute the model's flow: {error}") from None
        trained = config.algorithm
        if engine is None and self.device.type == "cuda" and trained in TVL1_ENGINES:
            engine = TVL1_ENGINES[trained]
        engine = engine or trained
        if engine != trained and TVL1_ENGINES.get(trained) != engine:
            raise FlowUnavailable(f"the model was trained on {trained} flow; {engine} computes different flow "
                                  f"(only {', '.join(f'{a} as {b}' for a, b in TVL1_ENGINES.items())} may stand in)")
        if engine not in ALGORITHMS:
            raise FlowUnavailable(f"flow algorithm {engine!r} is not available here")
        params = {key: value for key, value in config.params.items() if key in ALGORITHMS[engine].defaults}
        if "device" in ALGORITHMS[engine].defaults:  # where it runs, not what it computes
            params["device"] = str(self.device)
            params.pop("compile", None)  # auto: compiled on CUDA only
        config = replace(config, algorithm=engine, params=params)
        if self.device.type == "cuda" and hasattr(ALGORITHMS[engine], "batch"):
            config = replace(config, batch=CUDA_FLOW_BATCH)  # the video's pairs B at a time: same files
        try:
            self.algorithms = config.create_algorithms()
        except (ValueError, TypeError, OSError, RuntimeError) as error:  # RAFT without its weights file, ...
            raise FlowUnavailable(f"cannot run the model's flow algorithm {engine}: {error}") from None
        self.extraction = config
        self.flow_engine = engine + (f" on {self.device}" if "device" in params else "") + (
            f", {config.batch} pairs a call" if config.batch else "")
        if engine != trained:
            self.engine_note = (f"flow computed by {engine} on {self.device}: the checkpoint's {trained} "
                                "(same parameters) in PyTorch")

    # The video.

    def prepare(self, path: Path | str) -> PreparedVideo:
        """The video's flow in memory (for models reading flow) and its frame count and rate;
        one of ``VIDEO_ERRORS`` for a video that cannot be read."""
        path = Path(path)
        if self.extraction is None:
            return PreparedVideo(path, None, _decoded_frames(path), _video_fps(path))
        store = MemoryFlowStore()
        try:
            store.extract(path, VIDEO_ID, self.extraction, self.algorithms)
        except VideoError as error:  # named here, as the readers' errors name their file
            raise VideoDecodeError(path, str(error)) from None
        meta = store.meta(VIDEO_ID)
        notes = [self.engine_note] if self.engine_note else []
        return PreparedVideo(path, store, meta.num_frames, meta.fps / meta.step, meta.step, notes)

    def dataset(self, video: PreparedVideo, first: int = 0, count: int | None = None) -> VideoDataset:
        """The test dataset of frames ``first .. first + count - 1`` of ``video`` (all by default):
        one item, the test sample ``cli.py test`` would draw from a video of those frames."""
        count = video.frames - first if count is None else count
        store, video_id, reader = video.store, VIDEO_ID, self.reader
        if store is not None and (first or count != video.frames):
            video_id = f"{VIDEO_ID}@{first}+{count}"
            store.add_span(video_id, of=VIDEO_ID, first=first, count=count)
        if reader is not None and (first or count != video.frames):
            reader = _SpanReader(reader, first * video.step, count * video.step)
        if self.rawframes:
            reader = RawFrameReader(store)
        meta = store.meta(video_id) if store is not None else None
        # As datamodules.index counts: meta.json's frames and fields where there is flow.
        index = VideoIndex(
            list(self.loaded.classes or []), video_ids=[video_id], paths=[str(video.path)], labels=[-1],
            num_frames=[count if meta is None or meta.step == 1 else None],
            num_flows=[meta.num_flows if meta else None], flow_frames=[meta.num_frames if meta else None],
            flow_steps=[meta.step if meta else 1], listed=1,
        )  # fmt: skip
        return VideoDataset(index, self.modality, "test", self.augment, reader, store, self.sampling,
                            bidirectional=self.recipe.sampling.bidirectional_flow)

    # Scores.

    def score(self, path: Path | str) -> VideoScores:
        """The video's scores under the protocol.

        Raises:
            one of ``VIDEO_ERRORS``: the video cannot be read (the decoder's reason in the message).
        """
        video = self.prepare(path)
        return self._score(video, self.dataset(video), video.notes)

    def score_windows(self, path: Path | str, window_s: float,
                      stride_s: float) -> list[tuple[float, float, VideoScores]]:
        """Scores of sliding windows, ``(start_s, end_s, scores)`` each; the flow is computed once.

        Windows of ``window_s`` seconds start every ``stride_s`` seconds from 0 until one reaches
        the video's end (that last one may be shorter; a video shorter than a window is one).
        Each window is scored as a video of its frames alone would be.

        Args:
            path: the video.
            window_s: window length in seconds.
            stride_s: seconds between window starts.
        """
        if not window_s > 0 or not stride_s > 0:
            raise ValueError(f"window and stride must be positive seconds, got {window_s} and {stride_s}")
        video = self.prepare(path)
        results = []
        for first, count in window_spans(video.frames, video.fps, window_s, stride_s, 2 if video.store else 1):
            scores = self._score(video, self.dataset(video, first, count), video.notes)
            results.append((first / video.fps, (first + count) / video.fps, scores))
        return results

    def _score(self, video: PreparedVideo, dataset: VideoDataset, notes: list[str]) -> VideoScores:
        sample = dataset[0]
        batch = move_data_to_device(collate_test([sample]), self.device)
        batch = finish_batch(batch, self.specs, self.recipe.augment.flow_mean_subtraction, None,
                             self.recipe.sampling.stacking, self.recipe.sampling.bidirectional_flow)
        with torch.inference_mode():
            scores = self.module.video_scores(batch)
            if "spatial" in scores and "temporal" in scores and hasattr(self.module, "fuse"):
                scores["fusion"] = self.module.fuse(scores["spatial"], scores["temporal"])
        key = self.keys[0]
        positions, crops = len(sample[key]), len(sample["views"])
        return VideoScores(
            {name: value[0].float().cpu().numpy() for name, value in scores.items()},
            self._protocol(positions, crops), [*notes, *self._short_notes(dataset)], self.flow_engine,
        )  # fmt: skip

    def _protocol(self, positions: int, crops: int) -> dict[str, Any]:
        protocol: dict[str, Any] = {"crops": self.augment.test_crops, "views": positions * crops}
        if not is_clip(self.modality):
            return {"positions": positions, **protocol}
        if self.protocol.whole_video:
            return {"whole_video": True, "clips": 1, **protocol}
        return {"clips": positions, "stride": self.sampling.stride, **protocol}

    def _short_notes(self, dataset: VideoDataset) -> list[str]:
        """Says when the video is shorter than what one view reads (its indices then loop)."""
        index = dataset.index
        frames, fields = index.flow_frames[0] or index.num_frames[0], index.num_flows[0] or 0
        if is_clip(self.modality):
            length, stride = self.specs[self.keys[0]].frames, self.sampling.stride
            n = min(frames, fields) if self.keys == ("rgb", "flow") else fields if self.keys == ("flow",) else frames
            needed = length if self.sampling.whole_video else (length - 1) * stride + 1
            have = math.ceil(n / stride) if self.sampling.whole_video else n
            unit = "frames" if self.keys != ("flow",) else "flow fields"
            if have < needed:
                return [f"video shorter than one clip ({n} {unit}, a clip spans {needed}): its frames loop back to "
                        "the start, as test pads short clips"]
        elif "flow" in self.keys and fields < self.specs["flow"].frames:
            length = self.specs["flow"].frames
            return [f"video shorter than one flow stack ({fields} fields, a stack holds {length}): its fields loop "
                    "back to the start, as test does"]
        return []


def window_spans(frames: int, fps: float, window_s: float, stride_s: float,
                 minimum: int = 1) -> list[tuple[int, int]]:
    """``(first, count)`` frame spans of sliding windows (``VideoScorer.score_windows``).

    Args:
        frames: the video's frames.
        fps: their rate.
        window_s: window length in seconds.
        stride_s: seconds between starts.
        minimum: the fewest frames a window may hold (2 where flow is read: one field).
    """
    size = max(minimum, round(window_s * fps))
    stride = max(1, round(stride_s * fps))
    spans, first = [], 0
    while True:
        first = min(first, max(frames - minimum, 0))  # a last window too short to score starts earlier
        count = min(size, frames - first)
        spans.append((first, count))
        if first + count >= frames:
            return spans
        first += stride


def _decoded_frames(path: Path) -> int:
    """The video's frame count as ``datamodules.index`` probes it (decord's, from the container)."""
    try:
        return probe_num_frames(str(path))
    except Exception as error:  # noqa: BLE001 - decord raises its own DECORDError, or RuntimeError
        raise VideoDecodeError(path, str(error).strip().splitlines()[0] if str(error).strip() else
                               type(error).__name__) from None


def _video_fps(path: Path) -> float:
    """The video stream's frame rate (the windows' clock)."""
    try:
        with open_input(str(path)) as container:
            stream = container.streams.best("video")
            if stream is None:
                raise VideoDecodeError(path, "no video stream")
            return float(frames_per_second(stream))
    except av.FFmpegError as error:
        raise VideoDecodeError(path, f"cannot open as a video ({error.strerror or error})") from None
