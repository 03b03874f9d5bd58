"""StepTiming on real tiny fits: a loader that sleeps in ``__getitem__`` must show as data wait."""

import csv
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from test_configs import tiny_config
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cli import cli_main
from lightning_modules import StepTiming, step_timing
from lightning_modules.step_timing import DATA_BOUND_HINT, Totals, summarise

BATCH = 4
STEPS = 12


class SlowDataset(Dataset):
    """Random samples that each take ``sleep`` seconds to load (``sleep_by_rank`` per DDP rank)."""

    def __init__(self, sleep: float, sleep_by_rank: tuple[float, ...] | None = None, length: int = BATCH * STEPS):
        self.sleep, self.sleep_by_rank, self.length = sleep, sleep_by_rank, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sleep = self.sleep
        if self.sleep_by_rank is not None:
            sleep = self.sleep_by_rank[torch.distributed.get_rank()]
        time.sleep(sleep)
        generator = torch.Generator().manual_seed(index)
        return torch.randn(8, generator=generator), torch.tensor(index % 2)


class TinyModel(pl.LightningModule):
    def __init__(self, dataset: Dataset):
        super().__init__()
        self.dataset = dataset
        self.layer = nn.Linear(8, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=BATCH)


def fit(tmp_path: Path, sleep: float, every_n_steps: int = 4, **trainer_settings) -> StepTiming:
    timing = StepTiming(every_n_steps=every_n_steps)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, callbacks=[timing], logger=CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         **trainer_settings)
    trainer.fit(TinyModel(SlowDataset(sleep)))
    return timing


def logged_rows(tmp_path: Path) -> list[dict[str, str]]:
    (metrics,) = tmp_path.rglob("metrics.csv")
    with metrics.open() as file:
        return [row for row in csv.DictReader(file) if row.get("timing/data_wait_ms")]


def test_a_sleeping_loader_shows_as_data_wait(tmp_path, monkeypatch):
    printed: list[str] = []
    monkeypatch.setattr(step_timing, "rank_zero_info", printed.append)
    sleep = 0.02  # per sample: a batch of 4 takes >= 80 ms to load
    timing = fit(tmp_path, sleep)
    rows = logged_rows(tmp_path)
    assert len(rows) == STEPS // 4  # one row per 4 steps
    for row in rows:
        wait, step = float(row["timing/data_wait_ms"]), float(row["timing/step_ms"])
        # Lightning prefetches one batch ahead, so each step waits for one batch's loading.
        assert wait >= 0.9 * 1000 * sleep * BATCH, row
        assert step < wait, row
        assert float(row["timing/data_wait_share"]) > 0.5, row
        # Samples over the interval's wall time, which is at least the loading's time.
        assert 0 < float(row["timing/samples_per_s"]) <= 1.1 / sleep, row
    assert "waited for data" in timing.summary and DATA_BOUND_HINT in timing.summary
    assert printed == [timing.summary]  # printed on rank zero


def test_a_fast_loader_waits_less_than_a_slow_one(tmp_path):
    slow = fit(tmp_path / "slow", 0.01).state.run
    fast = fit(tmp_path / "fast", 0.0).state.run
    assert slow.steps == fast.steps == STEPS and slow.samples == fast.samples == STEPS * BATCH
    assert fast.data_wait < 0.5 * slow.data_wait
    assert fast.wait_share < slow.wait_share


def test_without_interval_it_follows_the_trainer_log_every_n_steps(tmp_path):
    fit(tmp_path, 0.0, every_n_steps=None, log_every_n_steps=3)
    assert len(logged_rows(tmp_path)) == STEPS // 3


def test_validation_inside_the_epoch_is_not_data_wait(tmp_path):
    """A validation pass between two steps (val_check_interval) is not time spent waiting for
    the training loader."""

    class SlowValidation(TinyModel):
        def validation_step(self, batch, batch_idx):
            time.sleep(0.2)

        def val_dataloader(self):
            return DataLoader(SlowDataset(0.0, length=BATCH), batch_size=BATCH)

    timing = StepTiming(every_n_steps=STEPS)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, callbacks=[timing], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         val_check_interval=3, num_sanity_val_steps=0)
    trainer.fit(SlowValidation(SlowDataset(0.0)))
    assert timing.state.run.steps == STEPS
    assert timing.state.run.data_wait < 0.2  # four validations of 0.2 s each happened


def ranks(*shares: float) -> list[Totals]:
    """Totals of ranks with 100 steps of 10 ms each and the given data-wait shares."""
    totals = []
    for share in shares:
        wait = share * 1.0 / (1 - share)
        totals.append(Totals(steps=100, samples=800, data_wait=wait, device_wait=wait, device_step=1.0, wall=1.0 + wait))
    return totals


def test_summary_hints_only_when_data_bound():
    assert DATA_BOUND_HINT in summarise(ranks(0.5), on_cuda=True, hint_above=0.1)
    quiet = summarise(ranks(0.05), on_cuda=True, hint_above=0.1)
    assert DATA_BOUND_HINT not in quiet and "the loader keeps up" in quiet
    assert "the GPU waited for data 5% of the time" in quiet


def test_summary_names_the_slowest_rank():
    summary = summarise(ranks(0.05, 0.6), on_cuda=False, hint_above=0.1)
    assert "waited for data 60% of the time (the slowest rank; rank 0: 5%, rank 1: 60%)" in summary
    assert DATA_BOUND_HINT in summary


def test_settings_are_checked():
    with pytest.raises(ValueError, match="every_n_steps"):
        StepTiming(every_n_steps=0)
    with pytest.raises(ValueError, match="hint_above"):
        StepTiming(hint_above=2.0)


def test_ddp_gathers_each_rank_into_the_summary(tmp_path, capfd):
    """Two CPU processes; rank 1's loader is slow, so rank 1 waits for data and rank 0 waits in
    the gradient all-reduce (step time): the summary names rank 1 as the slowest."""
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1,
                         callbacks=[StepTiming(every_n_steps=4)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyModel(SlowDataset(0.0, sleep_by_rank=(0.0, 0.02), length=2 * BATCH * 6)))
    output = capfd.readouterr()
    summary = next(line for line in (output.out + output.err).splitlines() if line.startswith("StepTiming:"))
    assert "(the slowest rank; rank 0: " in summary and summary.count("rank 1: ") == 1
    slowest = int(summary.split("% of the time")[0].rsplit(" ", 1)[1])
    assert f"rank 1: {slowest}%" in summary and slowest > 50


@pytest.mark.gpu
def test_cuda_events_time_the_step_on_the_gpu(tmp_path):
    """On CUDA the step is timed by events and the data-wait share from the GPU's timeline: a
    sleeping loader still dominates a tiny model."""
    timing = StepTiming(every_n_steps=4)
    trainer = pl.Trainer(accelerator="gpu", devices=1, max_epochs=1, callbacks=[timing], logger=CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyModel(SlowDataset(0.02)))
    assert timing.on_cuda
    rows = logged_rows(tmp_path)
    assert len(rows) == STEPS // 4
    for row in rows:
        assert float(row["timing/data_wait_ms"]) >= 0.9 * 1000 * 0.02 * BATCH, row
        assert 0 < float(row["timing/step_ms"]) < float(row["timing/data_wait_ms"]), row
        assert float(row["timing/data_wait_share"]) > 0.5, row
    assert "the GPU waited for data" in timing.summary


def test_turned_on_from_the_command_line_of_any_config(ucf101_tiny, tmp_path, monkeypatch):
    """The README's switch: appended to a config's own callbacks, it times the CLI's fit."""
    printed: list[str] = []
    monkeypatch.setattr(step_timing, "rank_zero_info", printed.append)
    config = tiny_config("quickstart", {"UCF101": ucf101_tiny}, tmp_path)
    cli = cli_main(["fit", "--config", str(config), "--trainer.callbacks+=lightning_modules.step_timing.StepTiming"])
    (timing,) = [callback for callback in cli.trainer.callbacks if isinstance(callback, StepTiming)]
    assert timing.state.run.steps == 1 and timing.state.run.samples > 0
    assert printed == [timing.summary] and timing.summary.startswith("StepTiming: 1 steps")
