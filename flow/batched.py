"""Extracting many videos with batched flow: pairs of several videos share one call (a GPU's way).

Four stages overlap, so the device computes while the CPU decodes and writes:

- decoding: ``threads`` threads, each reading one video at a time into frame pairs (the
  per-video path's decoders);
- batching: a thread groups the pairs by frame size (videos differ in size, a batch
  cannot) into batches of up to B, stacked in pinned host memory when the device is CUDA;
- flow: the calling thread runs the algorithm's ``batch`` on B pairs at a time,
  quantizes on the device (``flow.torch_codec``) and brings the uint8 levels back;
- JPEG + writing: ``threads`` threads, each encoding and writing one field's files.

A video's meta.json is written once all of its files are, so ``extract_many`` lists,
resumes, fails and sums up videos exactly as on the per-video path; given the same flow,
the files are byte-identical to that path's. With store ``packed`` the files go straight
into the video's ``.zip.tmp`` (``flow/outputs.py``), renamed once complete.

Bad input: a video that fails to decode, even with pairs already in a batch, fails alone
(its pairs are dropped, its partial files removed); a batch whose flow call fails is
split by video, so only the video that fails alone is failed; CUDA out of memory halves
the batch (one warning) and goes on, and a pair that fails alone fails its video.
Decoding runs in this process, so a decoder that crashes the process stops the run;
rerunning the command resumes it.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice
from pathlib import Path
from queue import Empty, Full, Queue

import numpy as np
import torch

from flow.algorithms import FlowAlgorithm, create_algorithm
from flow.extraction_config import ExtractionConfig, open_video
from flow.frames import VideoError, VideoFrames
from flow.outputs import VideoBusy, VideoOutput, finish_video, open_output, write_jpeg
from flow.summary import VideoResult
from flow.video_run import FatalError, Job, Skipped, failure_reason


Outcome = tuple[Job, VideoResult | Skipped | str]
from flow.stages import QUEUE_DEPTH, opencv_threads, prefetched, usable_cores
from flow.torch_codec import JpegEncoder, create_jpeg_encoder, quantize_tensor

# How long a blocked thread waits before it looks whether the run is stopping.
_POLL_SECONDS = 0.1


@dataclass(eq=False)
class _Video:
    """One video in flight. The decoding thread fills in ``frames``, ``num_frames`` and
    ``pairs`` before it reports the end of the video; the flow thread owns the rest, and
    ``pending``, ``bytes_written`` and ``write_error`` change under the writers' lock."""

    job: Job
    started: float = field(default_factory=time.perf_counter)
    output: VideoOutput | None = None  # opened by the decoding thread before it decodes
    frames: VideoFrames | None = None
    num_frames: int = 0
    pairs: int = 0  # pairs queued for flow
    computed: int = 0  # pairs whose fields went to the writers
    flow_seconds: float = 0.0
    failure: str | None = None
    skipped: Skipped | None = None  # another writer holds it (with ``failure`` set, so nothing is computed)
    pending: int = 0  # writes not finished
    bytes_written: int = 0
    write_error: BaseException | None = None


@dataclass(frozen=True)
class _Pair:
    video: _Video
    index: int
    backward: bool
    first: np.ndarray
    second: np.ndarray


@dataclass(frozen=True)
class _Ended:
    """The decoding of ``video`` ended: with ``error`` None, all its pairs are queued."""

    video: _Video
    error: Exception | None


@dataclass(frozen=True)
class _Batch:
    pairs: list[_Pair]
    first: torch.Tensor  # (B, H, W[, 3]) uint8 on the host
    second: torch.Tensor


_END = object()


class _Writers:
    """JPEG encoding and file writes on ``threads`` threads, with per-video accounting; at
    most a few tasks per thread wait, so fields do not pile up in memory."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="flow-write")
        self._slots = threading.BoundedSemaphore(4 * threads)
        self._lock = threading.Lock()

    def put(self, video: _Video, task: Callable[[], int]) -> None:
        """Run ``task`` (returns the bytes it wrote) for ``video``; nothing more is written for a
        video that failed."""
        self._slots.acquire()
        with self._lock:
            video.pending += 1
        future = self._pool.submit(self._run, video, task)
        future.add_done_callback(partial(self._done, video))

    def _run(self, video: _Video, task: Callable[[], int]) -> int:
        if video.failure is not None or video.write_error is not None:
            return 0
        return task()

    def _done(self, video: _Video, future: Future) -> None:
        with self._lock:
            video.pending -= 1
            error = future.exception() if not future.cancelled() else None
            if error is not None:
                video.write_error = video.write_error or error
            elif not future.cancelled():
                video.bytes_written += future.result()
        self._slots.release()

    def idle(self, video: _Video) -> bool:
        with self._lock:
            return video.pending == 0

    def close(self, cancel: bool) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)


def _write_field(encoder: JpegEncoder, output: VideoOutput, paths: Sequence[Path], payloads: Sequence[object]) -> int:
    return sum(output.write(path.name, encoder.finish(payload)) for path, payload in zip(paths, payloads))


def _device_of(algorithm: FlowAlgorithm) -> torch.device:
    return torch.device(algorithm.params().get("device", "cpu"))


class BatchedRun:
    """One batched extraction over many videos: ``outcomes(jobs)`` yields each video's
    VideoResult or failure reason as it completes. Use it as a context manager: leaving
    the block stops and joins every thread."""

    def __init__(self, config: ExtractionConfig, algorithm: FlowAlgorithm | None = None,
                 outputs: Callable[[Job], VideoOutput] | None = None) -> None:
        """``outputs``: where a job's files go; default ``open_output(job.target, config)``
        (``flow.memory_store`` passes its in-memory output)."""
        if config.batch < 1:
            raise ValueError(f"batched extraction needs batch >= 1, got {config.batch}")
        self.config = config
        self._open = outputs or (lambda job: open_output(job.target, config))
        self.algorithm = algorithm or create_algorithm(config.algorithm, **config.params)
        if not hasattr(self.algorithm, "batch"):
            raise ValueError(f"flow algorithm {config.algorithm!r} has no batched form")
        self.device = _device_of(self.algorithm)
        self.encoder = create_jpeg_encoder(config.jpeg, config.quality)
        # An encoder that cannot work on this device is refused here, once, not for every video.
        self.encoder.prepare(torch.zeros((1, 16, 16), dtype=torch.uint8, device=self.device))
        self.batch_size = config.batch  # lowered when the device runs out of memory
        self.threads = config.threads or max(1, usable_cores() // 2)
        self._color = self.algorithm.needs_color
        self._params = self.algorithm.params()
        self._stop = threading.Event()
        self._pairs: Queue = Queue(max(QUEUE_DEPTH, 2 * config.batch))
        self._writers = _Writers(self.threads)
        self._decoders: list[threading.Thread] = []
        self._ended: list[_Video] = []  # decoded (or failed) videos waiting for their last writes
        self._unfinished: set[_Video] = set()  # started videos without an outcome yet
        self._warned = False

    def __enter__(self) -> BatchedRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._decoders:
            thread.join()
        self._writers.close(cancel=exc_info[0] is not None)
        # A stopped run (a full disk, Ctrl-C) leaves no open pack behind: nothing writes any more.
        for video in self._unfinished:
            if video.output is not None:
                video.output.discard()
        self._unfinished.clear()

    # --- decoding threads -------------------------------------------------------------

    def _put(self, item: object) -> bool:
        """Queue ``item`` for the batching thread unless the run is stopping; False if stopping."""
        while not self._stop.is_set():
            try:
                self._pairs.put(item, timeout=_POLL_SECONDS)
                return True
            except Full:
                continue
        return False

    def _decode_all(self, jobs: Iterator[Job], lock: threading.Lock, running: list[int]) -> None:
        try:
            while not self._stop.is_set():
                with lock:
                    job = next(jobs, None)
                if job is None:
                    return
                video = _Video(job)
                self._unfinished.add(video)  # set.add holds the GIL: safe from the decoding threads
                try:
                    self._decode(video)
                    error = None
                except Exception as caught:  # noqa: BLE001 - reported as this video's failure
                    error = caught
                self._put(_Ended(video, error))
        finally:
            with lock:
                running[0] -= 1
                last = running[0] == 0
            if last:
                self._put(_END)

    def _decode(self, video: _Video) -> None:
        config, job = self.config, video.job
        # Opened first, as on the per-video path: a video another writer holds is skipped undecoded.
        output = video.output = self._open(job)
        video.frames = open_video(job.source, config, gray=not self._color, rgb=self._color or config.rgb)
        layout = config.layout
        with closing(iter(video.frames)) as decoded:
            head = list(islice(decoded, 2))
            if len(head) < 2:
                raise VideoError(f"{len(head)} frame(s) after sampling every {config.step}; a flow field needs 2")
            previous = None
            for k, frame in enumerate(chain(head, decoded)):
                if self._stop.is_set():
                    raise VideoError("the run stopped")
                if video.failure is not None:  # its flow failed: the rest would be dropped
                    return
                video.num_frames = k + 1
                if config.rgb:
                    path = layout.rgb_path(job.target, k)
                    self._writers.put(video, partial(write_jpeg, output, path, frame.rgb, config.quality))
                current = frame.rgb if self._color else frame.gray
                if previous is not None:
                    directions = ((False, previous, current), (True, current, previous))
                    for backward, first, second in directions[: 1 + config.backward]:
                        video.pairs += 1
                        self._put(_Pair(video, k - 1, backward, first, second))
                previous = current

    def _start_decoding(self, jobs: Sequence[Job]) -> None:
        count = max(1, min(self.threads, len(jobs)))
        queue, lock, running = iter(jobs), threading.Lock(), [count]
        for n in range(count):
            thread = threading.Thread(target=self._decode_all, args=(queue, lock, running),
                                      name=f"flow-decode-{n}", daemon=True)
            thread.start()
            self._decoders.append(thread)

    # --- batching thread --------------------------------------------------------------

    def _batches(self) -> Iterator[_Batch | _Ended]:
        """Pairs grouped by frame size into batches of up to ``batch_size``; each _Ended is
        passed on at once. Pairs of several sizes wait at most 2 batches' worth in all:
        beyond that the largest group goes, a partial batch."""
        groups: dict[tuple[int, ...], list[_Pair]] = {}
        while not self._stop.is_set():
            try:
                item = self._pairs.get(timeout=_POLL_SECONDS)
            except Empty:
                continue
            if item is _END:
                for group in groups.values():
                    yield from self._stacked(group)
                return
            if isinstance(item, _Ended):
                yield item
                continue
            group = groups.setdefault(item.first.shape, [])
            group.append(item)
            if len(group) >= self.batch_size:
                yield from self._stacked(groups.pop(item.first.shape))
            elif sum(map(len, groups.values())) > 2 * self.batch_size:
                yield from self._stacked(groups.pop(max(groups, key=lambda shape: len(groups[shape]))))

    def _stacked(self, pairs: list[_Pair]) -> Iterator[_Batch]:
        size = self.batch_size
        pin = self.device.type == "cuda"
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            stacks = []
            for name in ("first", "second"):
                # Stacked straight into (pinned) memory the device copies from without a staging copy.
                frames = [getattr(pair, name) for pair in chunk]
                stack = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=pin)
                np.stack(frames, out=stack.numpy())
                stacks.append(stack)
            yield _Batch(chunk, *stacks)

    # --- the flow thread --------------------------------------------------------------

    def outcomes(self, jobs: Sequence[Job]) -> Iterator[Outcome]:
        """Extract ``jobs``; yields ``(job, VideoResult | reason)`` as videos complete."""
        if not jobs:
            return
        self._start_decoding(jobs)
        batches = prefetched(self._batches(), depth=2)
        try:
            # OpenCV's own threads would only oversubscribe the cores the stages' threads use.
            with opencv_threads(1):
                for item in batches:
                    if isinstance(item, _Ended):
                        self._end(item)
                    else:
                        self._compute(item)
                    yield from self._completed()
        finally:
            # Done, failed or abandoned: the decoding and batching threads stop (no-ops when done).
            self._stop.set()
            batches.close()
        self._writers.close(cancel=False)
        yield from self._completed()
        assert not self._ended, f"videos left unfinished: {[video.job.listed for video in self._ended]}"

    def _end(self, ended: _Ended) -> None:
        video = ended.video
        if ended.error is not None:
            self._fail(video, ended.error)
        self._ended.append(video)

    def _fail(self, video: _Video, error: Exception) -> None:
        if video.failure is None:
            if isinstance(error, VideoBusy):
                video.skipped = Skipped(str(error))
                video.failure = video.skipped.reason
            else:
                video.failure = failure_reason(error, video.job.target)

    def _compute(self, batch: _Batch) -> None:
        """Flow of a batch's pairs, split when the device runs out of memory or a call fails,
        then handed to the writers."""
        work = [(batch.pairs, batch.first, batch.second)]
        while work:
            pairs, first, second = work.pop()
            live = [n for n, pair in enumerate(pairs) if pair.video.failure is None]
            if len(live) < len(pairs):
                pairs, first, second = [pairs[n] for n in live], first[live], second[live]
            if not pairs:
                continue
            try:
                tick = time.perf_counter()
                payloads = self._flow_payloads(first, second)
                seconds = time.perf_counter() - tick
            except torch.cuda.OutOfMemoryError as error:
                if len(pairs) == 1:
                    self._fail(pairs[0].video, error)
                    continue
                half = len(pairs) // 2
                self._lower_batch_size(len(pairs), half)
                work += [(pairs[half:], first[half:], second[half:]), (pairs[:half], first[:half], second[:half])]
                continue
            except Exception as error:  # noqa: BLE001 - find the video it belongs to
                videos = list(dict.fromkeys(pair.video for pair in pairs))
                if len(videos) == 1:
                    self._fail(videos[0], error)
                    continue
                for video in reversed(videos):
                    mine = [n for n, pair in enumerate(pairs) if pair.video is video]
                    work.append(([pairs[n] for n in mine], first[mine], second[mine]))
                continue
            self._write(pairs, payloads, seconds)

    def _flow_payloads(self, first: torch.Tensor, second: torch.Tensor) -> Sequence[object]:
        """The JPEG encoder's payloads of the x and y planes of each pair's field, in pair order."""
        first = first.to(self.device, non_blocking=True)
        second = second.to(self.device, non_blocking=True)
        flow = self.algorithm.batch(first, second)  # type: ignore[attr-defined]
        levels = quantize_tensor(flow, self.config.bound)  # (B, H, W, 2)
        planes = levels.permute(0, 3, 1, 2).reshape(-1, *levels.shape[1:3])  # x0, y0, x1, y1, ...
        return self.encoder.prepare(planes)

    def _lower_batch_size(self, failed: int, size: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.batch_size = min(self.batch_size, size)
        if not self._warned:
            self._warned = True
            warnings.warn(f"CUDA out of memory computing {failed} pairs at once; going on with batches of "
                          f"{size} (halved again if needed)", RuntimeWarning, stacklevel=2)

    def _write(self, pairs: list[_Pair], payloads: Sequence[object], seconds: float) -> None:
        layout = self.config.layout
        for n, pair in enumerate(pairs):
            video = pair.video
            paths = layout.flow_paths(video.job.target, pair.index, pair.backward)
            write = partial(_write_field, self.encoder, video.output, paths, payloads[2 * n : 2 * n + 2])
            self._writers.put(video, write)
            video.computed += 1
            video.flow_seconds += seconds / len(pairs)

    def _completed(self) -> Iterator[Outcome]:
        """Outcomes of the videos whose decoding ended and whose last write finished."""
        waiting = []
        for video in self._ended:
            done = video.failure is not None or video.computed == video.pairs
            if not (done and self._writers.idle(video)):
                waiting.append(video)
                continue
            self._unfinished.discard(video)
            yield video.job, self._finish(video)
        self._ended = waiting

    def _finish(self, video: _Video) -> VideoResult | Skipped | str:
        job = video.job
        complete = False
        try:
            if video.failure is None and video.write_error is None:
                assert video.frames is not None and video.output is not None
                try:
                    result = finish_video(
                        video.output, self.config, self._params, video.frames, video.num_frames, job.listed,
                        video.bytes_written, time.perf_counter() - video.started, video.flow_seconds,
                    )  # fmt: skip
                    complete = True
                    return result
                except OSError as error:
                    video.write_error = error
            if video.failure is None:
                self._fail(video, video.write_error)  # type: ignore[arg-type]  # a full disk raises FatalError
            assert video.failure is not None
            return video.skipped or video.failure
        finally:
            # Every write of the video has finished (it is idle): nothing writes into its output any more.
            if not complete and video.output is not None:
                video.output.discard()


def batched_outcomes(jobs: Sequence[Job], config: ExtractionConfig) -> Iterator[Outcome]:
    """``extract_many``'s outcomes on the batched path: ``(job, VideoResult | reason)`` per video."""
    try:
        run = BatchedRun(config)
    except ValueError as error:
        raise FatalError(f"cannot start the batched extraction: {error}") from None
    with run:
        yield from run.outcomes(jobs)
