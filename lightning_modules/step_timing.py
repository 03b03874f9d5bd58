"""Where a training step's time goes: waiting for the DataLoader, or computing.

``StepTiming`` is a callback for any config::

    trainer:
      callbacks:
        - class_path: lightning_modules.step_timing.StepTiming

Per training step it measures

- the data wait: wall time from the end of one step (``on_train_batch_end``) to the start
  of the next (``on_train_batch_start``), i.e. what the loop spent blocked on the loader
  (Lightning's host-to-device copy of the batch falls in it too);
- the step time: on CUDA the time between two ``torch.cuda.Event`` records around the step,
  read back only every ``every_n_steps`` steps (one synchronisation per interval, so timing
  does not serialise the host with the GPU); elsewhere the step's wall time.

Every ``every_n_steps`` steps it writes to the trainer's loggers ``timing/data_wait_ms`` and
``timing/step_ms`` (means per step), ``timing/samples_per_s`` (samples over the interval's
wall time) and ``timing/data_wait_share``: the share of the interval the device spent
waiting for the next batch. On CUDA that share is read from the GPU's own timeline (the
gap between one step's end event and the next step's start event), not from the host's
wait: the host may wait for the loader while the GPU is still busy with queued work, which
costs nothing.

At the end of training, rank zero prints one line per run (each rank's share, gathered,
under DDP: the slowest rank paces all of them) and, when the device waited for data more
than ``hint_above`` of the time, what to do about it. Values logged during training are
the logging rank's (rank zero's) own.

Time outside training steps is not counted: the first batch of an epoch is measured from
the epoch's start (worker start-up is real waiting), validation and end-of-epoch
checkpointing are not. What the loop does between two steps besides fetching (writing logs,
a checkpoint every n steps) counts as data wait: the device is idle then too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.data import extract_batch_size
from pytorch_lightning.utilities.exceptions import MisconfigurationException

DATA_BOUND_HINT = (
    "the loader is the bottleneck: raise the DataModule's num_workers, pre-resize the videos "
    "(`python -m datamodules resize`), and measure the loader alone with `python benchmarks/loader_speed.py`"
)


@dataclass
class Mark:
    """A point in time: the host's clock, and the device's (a recorded CUDA event) where timed."""

    wall: float
    event: torch.cuda.Event | None = None


def mark(on_cuda: bool) -> Mark:
    event = None
    if on_cuda:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
    return Mark(time.perf_counter(), event)


def device_seconds(start: Mark, end: Mark) -> float:
    """Seconds between two marks on the device's clock (CUDA events, both already complete)
    or, without events, on the host's."""
    if start.event is not None and end.event is not None:
        return start.event.elapsed_time(end.event) / 1000.0
    return end.wall - start.wall


@dataclass
class Step:
    previous_end: Mark  # the previous step's end, or the epoch's (or validation's) end
    start: Mark
    end: Mark
    samples: int


@dataclass
class Totals:
    """Sums over steps: host wait, device wait, device step time, wall time, samples."""

    steps: int = 0
    samples: int = 0
    data_wait: float = 0.0
    device_wait: float = 0.0
    device_step: float = 0.0
    wall: float = 0.0

    def add(self, steps: list[Step]) -> None:
        for step in steps:
            self.steps += 1
            self.samples += step.samples
            self.data_wait += step.start.wall - step.previous_end.wall
            self.device_wait += max(0.0, device_seconds(step.previous_end, step.start))
            self.device_step += device_seconds(step.start, step.end)
            self.wall += step.end.wall - step.previous_end.wall

    @property
    def wait_share(self) -> float:
        busy = self.device_wait + self.device_step
        return self.device_wait / busy if busy > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        steps = max(self.steps, 1)
        return {
            "timing/data_wait_ms": 1000.0 * self.data_wait / steps,
            "timing/step_ms": 1000.0 * self.device_step / steps,
            "timing/samples_per_s": self.samples / self.wall if self.wall > 0 else 0.0,
            "timing/data_wait_share": self.wait_share,
        }

    def as_tensor(self, device: torch.device) -> torch.Tensor:
        values = [self.steps, self.samples, self.data_wait, self.device_wait, self.device_step, self.wall]
        return torch.tensor(values, dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> Totals:
        steps, samples, *rest = values.tolist()
        return cls(int(steps), int(samples), *rest)


@dataclass
class _State:
    pending: list[Step] = field(default_factory=list)
    interval: Totals = field(default_factory=Totals)
    run: Totals = field(default_factory=Totals)
    last_end: Mark | None = None
    start: Mark | None = None
    samples: int = 0


class StepTiming(pl.Callback):
    """Times the data wait and the step of every training step; logs and summarises them.

    Args:
        every_n_steps: steps per logged value (and, on CUDA, per synchronisation); None: the
            Trainer's ``log_every_n_steps``.
        hint_above: the share of time waiting for data above which the summary says how to
            feed the device faster.
    """

    def __init__(self, every_n_steps: int | None = None, hint_above: float = 0.1) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"StepTiming every_n_steps must be >= 1, got {every_n_steps}")
        if not 0.0 <= hint_above <= 1.0:
            raise ValueError(f"StepTiming hint_above is a share in [0, 1], got {hint_above}")
        self.every_n_steps = every_n_steps
        self.hint_above = hint_above
        self.state = _State()
        self.on_cuda = False
        self.summary: str | None = None  # the last summary, also printed by rank zero

    def _interval(self, trainer: pl.Trainer) -> int:
        return self.every_n_steps or max(1, trainer.log_every_n_steps)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.on_cuda = pl_module.device.type == "cuda"
        self.state = _State()
        self.summary = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state.last_end = mark(self.on_cuda)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation inside an epoch: the next batch's wait starts now, not at the last step.
        if self.state.last_end is not None:
            self.state.last_end = mark(self.on_cuda)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.state.start = mark(self.on_cuda)
        try:
            self.state.samples = int(extract_batch_size(batch))
        except MisconfigurationException:  # a batch without tensors: count steps, not samples
            self.state.samples = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        state = self.state
        end = mark(self.on_cuda)
        if state.start is None or state.last_end is None:
            return
        state.pending.append(Step(state.last_end, state.start, end, state.samples))
        state.last_end, state.start = end, None
        if len(state.pending) >= self._interval(trainer):
            self._flush(trainer)

    def _flush(self, trainer: pl.Trainer) -> dict[str, float] | None:
        """Reads the pending steps' times (one synchronisation on CUDA), logs their means."""
        state = self.state
        if not state.pending:
            return None
        last = state.pending[-1].end.event
        if last is not None:
            last.synchronize()  # every earlier event on the stream is complete too
        interval = Totals()
        interval.add(state.pending)
        state.run.add(state.pending)
        state.pending.clear()
        metrics = interval.metrics()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        return metrics

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
        # Every rank reaches here; gather each rank's totals so the summary names the slowest.
        gathered = trainer.strategy.all_gather(self.state.run.as_tensor(pl_module.device))
        ranks = [Totals.from_tensor(row) for row in gathered.reshape(-1, 6).cpu()]
        self.summary = summarise(ranks, self.on_cuda, self.hint_above)
        rank_zero_info(self.summary)


def summarise(ranks: list[Totals], on_cuda: bool, hint_above: float) -> str:
    """The end-of-training summary of each rank's totals."""
    steps = ranks[0].steps
    if steps == 0:
        return "StepTiming: no training steps were timed"
    device = "the GPU" if on_cuda else "the device"
    slowest = max(range(len(ranks)), key=lambda rank: ranks[rank].wait_share)
    share = ranks[slowest].wait_share
    total = Totals()
    for rank in ranks:
        total.steps += rank.steps
        total.data_wait += rank.data_wait
        total.device_step += rank.device_step
    samples_per_s = sum(rank.samples / rank.wall for rank in ranks if rank.wall > 0)
    per_rank = ""
    if len(ranks) > 1:
        shares = ", ".join(f"rank {rank}: {ranks[rank].wait_share:.0%}" for rank in range(len(ranks)))
        per_rank = f" (the slowest rank; {shares})"
    line = (f"StepTiming: {steps} steps, {samples_per_s:,.1f} samples/s; {device} waited for data "
            f"{share:.0%} of the time{per_rank}; per step: data wait "
            f"{1000 * total.data_wait / total.steps:.1f} ms, step {1000 * total.device_step / total.steps:.1f} ms")
    if share > hint_above:
        return f"{line}\n  {DATA_BOUND_HINT}"
    return f"{line}; the loader keeps up"
