"""The map-style video dataset: one item per indexed video, a dict of uint8 samples.

An item reads the frames and flow fields that ``sampling`` picks for its stage, and
``Augment`` crops and flips them (one crop and flip shared by every key). Items stay uint8;
``finish`` (the datamodules' ``on_after_batch_transfer``) turns a batch of them into the
networks' inputs on the device (``datamodules.batch``):

    modality          train / val item              test item (P positions, K crops)
    rgb               rgb (1, 3, h, w)              rgb (P, 1, 3, H, W) + views (K, 5)
    flow              flow (L, 2, h, w)             flow (P, L, 2, H, W) + views
    two_stream        both, aligned                 both, aligned
    rgb_clip          rgb (T, 3, h, w)              rgb (clips, T, 3, H, W) + views
    flow_clip         flow (T, 2, h, w)             flow (clips, T, 2, H, W) + views
    two_stream_clip   both, same frames             both, same frames

(h, w: the crop; H, W: the short-side resized frame) plus ``label`` and ``index`` (and
``dataset`` when the dataset has a ``tag``), and with flow ``flow_bound`` and ``flow_scale``.
Finished, train and val keys are (3, h, w), (2L, h, w), (3, T, h, w), (2, T, h, w); test
keys ``TestViews`` of the P x K views, position-major.

Bi-directional flow (``bidirectional=True``, the two-stream paper's variant; 2D ``flow``
and ``two_stream``): the stack around frame tau holds L/2 backward fields (tau - L/2 ..
tau - 1, each from frame k + 1 to k) and L/2 forward fields (tau .. tau + L/2 - 1), still
2L channels. Fields are in time order, backward first, and channels follow the x1..xL,
y1..yL convention: x of the backward fields, x of the forward fields, then y likewise.
A flip negates the x of every field, backward and forward alike. The RGB frame of
``two_stream`` is tau. Backward flow comes from ``python -m flow extract --backward``.

Bad data. A video or flow file that cannot be read in training, or a video whose RGB frames
and flow fields differ in size (``FrameSizeMismatch``: e.g. a phone video's flow extracted
sideways by an extractor that ignored its display rotation), is replaced by the next
video of the index (deterministic), logged with its file and counted; once at least
``MIN_DRAWS`` items were drawn, a share of failures above ``max_failure_rate`` raises,
naming the files: a few broken downloads are tolerated, a broken dataset is not. Counts
live in the dataset object, i.e. per DataLoader worker and, without persistent workers,
per epoch. In val, test and predict a bad video raises at once, naming it: evaluation
must score every listed video, so silently scoring another one would bias the result.

Randomness. Each training item draws its numpy Generator's seed from torch's RNG: in a
DataLoader worker that RNG is seeded with the worker's seed (base seed + worker id, new
every epoch unless workers persist), in the main process by ``seed_everything``. So
workers differ and runs repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.batch import finish_batch
from datamodules.decoding import FrameReader, RawFrameReader, VideoDecodeError
from datamodules.index import VideoIndex
from datamodules.modality import check_modality, is_clip, modality_keys
from datamodules.sampling import (
    Sampling,
    Stage,
    bidirectional_stack_positions,
    clip_positions,
    flow_stack_positions,
    frame_positions,
    two_stream_positions,
    whole_video_positions,
)
from datamodules.trajectory import bound_problem
from datamodules.transforms import Augment
from flow.store import FolderFlowStore
from models.input_spec import InputSpec

log = logging.getLogger(__name__)

_warned_counts: set[str] = set()  # flow folders whose field count was warned about, in this process
_checked_bounds: set[str] = set()  # flow folders checked for a bound too small for trajectories, in this process


def _warn_field_count(folder: object, num_flows: int, num_frames: int) -> None:
    """A folder without meta.json whose field count disagrees with the listed frame count:
    another tool's folder cut short, or a killed extraction's leftover. Read as it is
    (other tools' folders have no meta.json), said once per video."""
    if str(folder) not in _warned_counts:
        _warned_counts.add(str(folder))
        log.warning("%s holds %d flow fields but its video is listed with %d frames: an unfinished extraction? "
                    "(re-extract it with python -m flow extract)",
                    folder, num_flows, num_frames)

MIN_DRAWS = 20  # below this many draws a failure rate says little
MAX_REPLACEMENTS = 10  # consecutive bad videos tried for one item before giving up
# What reading a broken file raises: decoders (VideoDecodeError), the flow store (missing
# files: OSError; corrupt JPEG or sizes: ValueError; fewer fields than meta.json: IndexError).
READ_ERRORS: tuple[type[BaseException], ...] = (VideoDecodeError, OSError, ValueError, IndexError)


class DataFailureError(RuntimeError):
    """Too many unreadable videos, or an unreadable one during evaluation; names the files."""


class FrameSizeMismatch(ValueError):
    """The keys of one video's sample (RGB frames, flow fields) differ in frame size: the
    data's fault, so the video counts as unreadable (a ValueError, one of READ_ERRORS)."""


def check_bidirectional(modality: str, specs: Mapping[str, InputSpec]) -> None:
    """Fail unless bi-directional stacks fit: a 2D flow stack of an even number of fields.

    Args:
        modality: the sample's modality.
        specs: the InputSpecs per key; the flow spec's ``frames`` is L.
    """
    if modality not in ("flow", "two_stream"):
        raise ValueError(f"bidirectional_flow stacks 2D flow fields: use modality flow or two_stream, not {modality!r}")
    length = specs["flow"].frames
    if length % 2:
        raise ValueError(f"bidirectional_flow takes L/2 backward and L/2 forward fields: L (the flow network's "
                         f"InputSpec frames) must be even, got {length}")


class VideoDataset(Dataset):
    """Samples of the videos in ``index`` for one stage (see the module docstring).

    Args:
        index: the usable videos (``datamodules.index.build_index``).
        modality: one of ``datamodules.modality.MODALITIES``.
        stage: "train", "val" or "test" (predict uses "test").
        augment: turns frames into inputs; its specs give L (2D flow) and T (clips).
        reader: reads RGB frames (decord, torchcodec or rawframes); needed for RGB.
        store: reads flow fields (and frame counts from meta.json); needed for flow.
        sampling: test positions and clip spacing.
        max_failure_rate: tolerated share of unreadable items in training.
        tag: added to every sample as ``dataset`` (multi-dataset training); None: no key.
        bidirectional: 2D flow stacks of backward and forward fields (see the module
            docstring); every video whose meta.json says it has no backward flow fails here.
        clips_per_video: training items of k > 1 samples (clips, frames or stacks, each at a
            random position with its own crop and flip) read with one decode of the video,
            as PySlowFast's ``NUM_SAMPLE``: an item is then a list, flattened by
            ``datamodules.batch.collate_flat``, so a batch of B items holds B x k samples.
    """

    def __init__(
        self,
        index: VideoIndex,
        modality: str,
        stage: Stage,
        augment: Augment,
        reader: FrameReader | None = None,
        store: FolderFlowStore | None = None,
        sampling: Sampling = Sampling(),
        max_failure_rate: float = 0.05,
        tag: int | None = None,
        bidirectional: bool = False,
        clips_per_video: int = 1,
    ):
        check_modality(modality)
        if clips_per_video < 1 or (clips_per_video > 1 and stage != "train"):
            raise ValueError(f"clips_per_video must be >= 1 and applies to training only, got {clips_per_video} "
                             f"in {stage}")
        keys = modality_keys(modality)
        if "rgb" in keys and reader is None:
            raise ValueError(f"modality {modality!r} reads RGB frames: pass a frame reader")
        if "flow" in keys and store is None:
            raise ValueError(f"modality {modality!r} reads flow: pass a flow store")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1], got {max_failure_rate}")
        lengths = {augment.specs[key].frames for key in keys}
        if is_clip(modality) and len(lengths) != 1:
            raise ValueError(f"both streams of {modality!r} must take the same frames, got {sorted(lengths)}")
        self.index, self.modality, self.stage, self.augment = index, modality, stage, augment
        self.keys, self.reader, self.store, self.sampling = keys, reader, store, sampling
        self.max_failure_rate, self.tag, self.bidirectional = max_failure_rate, tag, bidirectional
        self.clips_per_video = clips_per_video
        if bidirectional:
            check_bidirectional(modality, augment.specs)
            self._require_backward_flow()
        self.draws = 0
        self.failures: list[tuple[str, str]] = []  # (file, reason)

    def _require_backward_flow(self) -> None:
        # Caught at read time, a missing direction would look like a broken file and be
        # replaced in training: a whole dataset extracted without --backward must fail now.
        # The dataset reads these meta.json files anyway (cached in the store).
        lacking = [video_id for video_id in self.index.video_ids
                   if (meta := self.store.meta(video_id)) is not None and not meta.backward]
        if lacking:
            raise ValueError(f"bidirectional_flow reads backward flow, which {len(lacking)} of {len(self)} videos "
                             f"lack (meta.json backward=false), e.g. {', '.join(lacking[:5])}; extract them with "
                             "`python -m flow extract --backward`")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    def finish(self, batch: dict) -> dict:
        """A collated batch of this dataset's items, on its device, as the networks take it."""
        return finish_batch(batch, self.augment.specs, self.augment.subtract_flow_mean,
                            stacking=self.augment.stacking, bidirectional=self.bidirectional)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int] | list[dict[str, torch.Tensor | int]]:
        if self.stage != "train":
            try:
                frames, bound = self._read_all(i, None)
            except READ_ERRORS as error:
                raise DataFailureError(f"cannot read {self._source(i)} in {self.stage}: {error}") from error
            return self._sample(i, frames, bound, None)
        self.draws += 1
        rng = np.random.default_rng(int(torch.randint(2**62, ())))
        for attempt in range(MAX_REPLACEMENTS):
            j = (i + attempt) % len(self)
            try:
                frames, bound = self._read_all(j, rng)
            except READ_ERRORS as error:
                self._record_failure(j, error)
                continue
            self._check_rate()
            if self.clips_per_video > 1:  # one decode, k samples: each its own position, crop and flip
                return [self._sample(j, {key: clip[c:c + 1] for key, clip in frames.items()}, bound, rng)
                        for c in range(self.clips_per_video)]
            return self._sample(j, frames, bound, rng)
        raise DataFailureError(f"{MAX_REPLACEMENTS} consecutive videos from item {i} are unreadable: "
                               f"{self._failed_files()}")

    def _record_failure(self, j: int, error: BaseException) -> None:
        source = self._source(j)
        self.failures.append((source, str(error)))
        log.warning("replacing unreadable video %s (item %d) by the next one: %s", source, j, error)
        self._check_rate()

    def _check_rate(self) -> None:
        if self.draws >= MIN_DRAWS and len(self.failures) > self.max_failure_rate * self.draws:
            raise DataFailureError(
                f"{len(self.failures)} unreadable of {self.draws} items drawn exceeds max_failure_rate="
                f"{self.max_failure_rate}: {self._failed_files()}")

    def _failed_files(self) -> str:
        return "; ".join(f"{source} ({reason})" for source, reason in self.failures[-20:])

    def _source(self, j: int) -> str:
        """The file a failure is reported against: the video, or its flow folder."""
        path = self.index.paths[j]
        if path is not None and "rgb" in self.keys and not isinstance(self.reader, RawFrameReader):
            return path
        return str(self.store.folder(self.index.video_ids[j])) if self.store else self.index.video_ids[j]

    def _read_all(self, j: int, rng: np.random.Generator | None) -> tuple[dict[str, torch.Tensor], float]:
        """Video j's uint8 frames per key and its flow's bound (0 without flow); only this part
        may fail on bad data."""
        frames, bound = {}, 0.0
        draws = [self._positions(j, rng) for _ in range(self.clips_per_video)]
        for key in draws[0]:
            indices = np.concatenate([draw[key] for draw in draws])  # (k, T): read in one call
            if key == "flow":
                frames[key], bound = self._read_flow(j, indices)
            else:
                frames[key] = self._read_rgb(j, indices)
        self._check_frame_sizes(j, frames)
        return frames, bound

    def _check_frame_sizes(self, j: int, frames: dict[str, torch.Tensor]) -> None:
        # Augment refuses keys of different sizes too, but as a setting's error; checked
        # here, the video is named and, in training, replaced like any unreadable one.
        if len(frames) < 2:
            return
        sizes = {key: self.augment.resized_size(*clip.shape[-2:]) for key, clip in frames.items()}
        if len(set(sizes.values())) > 1:
            described = " and ".join(f"{key} {size}" for key, size in sizes.items())
            raise FrameSizeMismatch(
                f"video {self.index.video_ids[j]}: its frames differ in size (height, width) after the short-side "
                f"resize: {described}; a phone video's flow extracted without its display rotation is sideways, and a "
                f"video re-encoded at another size (`datamodules resize --codec h264` rounds odd sides up) no longer "
                f"matches flow extracted from its original: re-extract {self.store.folder(self.index.video_ids[j]) if self.store else 'it'} "
                "(`python -m flow extract` applies the rotation)")

    def _sample(self, j: int, frames: dict[str, torch.Tensor], bound: float,
                rng: np.random.Generator | None) -> dict[str, torch.Tensor | int]:
        # Outside the caught region on purpose: a transform error is a setting's fault, not the video's.
        sample: dict[str, torch.Tensor | int] = dict(self.augment(frames, bound, rng))
        sample["label"] = self.index.labels[j]
        sample["index"] = j
        if self.tag is not None:
            sample["dataset"] = self.tag
        return sample

    def _counts(self, j: int) -> tuple[int, int]:
        """(frames, flow fields) of video j; frames count the flow's (step-sampled) frames
        when the modality reads flow, so that RGB and flow indices agree."""
        num_flows = self.index.num_flows[j] or 0
        if "flow" in self.keys and self.index.flow_frames[j] is not None:  # meta.json's, settled in the index
            return self.index.flow_frames[j], num_flows
        num_frames = self.index.num_frames[j]
        if num_frames is None:
            num_frames = num_flows + 1 if "flow" in self.keys else self.reader.num_frames(self._rgb_source(j))
        elif "flow" in self.keys and not num_frames - 1 <= num_flows <= num_frames:
            _warn_field_count(self.store.folder(self.index.video_ids[j]) if self.store else self.index.video_ids[j],
                              num_flows, num_frames)
        return num_frames, num_flows

    def _positions(self, j: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """Indices (P, T) per key: P positions (one outside test), T frames or fields."""
        num_frames, num_flows = self._counts(j)
        stage, sampling = self.stage, self.sampling
        if is_clip(self.modality):
            length = self.augment.specs[self.keys[0]].frames
            # Field k moves frame k to k + 1: clips of both streams take the same k.
            n = min(num_frames, num_flows) if self.keys == ("rgb", "flow") else (
                num_flows if self.keys == ("flow",) else num_frames)
            if stage == "test" and sampling.whole_video:
                indices = whole_video_positions(n, sampling.stride, length)
            else:
                indices = clip_positions(n, length, sampling.stride, stage, rng, sampling.test_clips)
            return {key: indices for key in self.keys}
        count = sampling.test_positions
        if self.modality == "rgb":
            return {"rgb": frame_positions(num_frames, stage, rng, count)}
        length = self.augment.specs["flow"].frames
        if self.bidirectional:
            backward, forward = bidirectional_stack_positions(num_flows, length, stage, rng, count)
            # The first forward field starts at tau, the stack's centre; _read_flow reads the
            # first half of each row as backward fields.
            rgb, flow = forward[:, :1], np.concatenate([backward, forward], axis=1)
        elif self.modality == "flow":
            return {"flow": flow_stack_positions(num_flows, length, stage, rng, count)}
        else:
            rgb, flow = two_stream_positions(num_frames, num_flows, length, stage, rng, count)
        return {"rgb": rgb, "flow": flow} if "rgb" in self.keys else {"flow": flow}

    def _rgb_source(self, j: int) -> str:
        if isinstance(self.reader, RawFrameReader):
            return self.index.video_ids[j]
        path = self.index.paths[j]
        if path is None:
            raise VideoDecodeError(self.index.video_ids[j], "no video file (and the reader is not rawframes)")
        return path

    def _read_flow(self, j: int, indices: np.ndarray) -> tuple[torch.Tensor, float]:
        """uint8 (P, T, 2, H, W) quantized [x, y] flow fields and their bound."""
        video_id = self.index.video_ids[j]
        # A bi-directional stack's first half are backward fields (module docstring).
        half = indices.shape[1] // 2 if self.bidirectional else 0
        directions = [self.store.read_fields(video_id, indices[:, :half].reshape(-1).tolist(), backward=True)] \
            if half else []
        directions.append(self.store.read_fields(video_id, indices[:, half:].reshape(-1).tolist()))
        sizes = {tuple(fields.planes.shape[1:]) for fields in directions}
        if len(sizes) > 1:
            raise ValueError(f"{self.store.folder(video_id)}: backward and forward fields differ in size {sorted(sizes)}")
        planes = [fields.planes.reshape(len(indices), -1, *fields.planes.shape[1:]) for fields in directions]
        stacks = planes[0] if len(planes) == 1 else torch.cat(planes, dim=1)
        folder = str(self.store.folder(video_id))
        if self.augment.stacking == "trajectory" and folder not in _checked_bounds:
            _checked_bounds.add(folder)  # on the first fields read: once per video, not per sample
            problem = bound_problem(stacks, directions[-1].bound)
            if problem is not None:  # trajectories would stop short where the motion was clipped
                log.warning("%s: %s", folder, problem)
        return stacks, directions[-1].bound

    def _read_rgb(self, j: int, indices: np.ndarray) -> torch.Tensor:
        """uint8 (P, T, 3, H, W) RGB frames."""
        positions, length = indices.shape
        flat = indices.reshape(-1)
        step = self.index.flow_steps[j] if "flow" in self.keys else 1
        if step > 1 and not isinstance(self.reader, RawFrameReader):
            flat = flat * step  # flow frame k is video frame k * step
        frames = torch.from_numpy(self.reader.read_frames(self._rgb_source(j), flat.tolist()))
        frames = frames.permute(0, 3, 1, 2)  # (N, 3, H, W)
        return frames.reshape(positions, length, *frames.shape[1:])
