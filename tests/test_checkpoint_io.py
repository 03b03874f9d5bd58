"""lightning_modules/checkpoint_io.py: checkpoints appear whole or not at all, beside their final name."""

import errno
import socket
import subprocess
import sys

import pytest
import torch
from pytorch_lightning import Trainer
from pytorch_lightning.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from flow.ownership import temporary
from lightning_modules.checkpoint_io import CheckpointWriteError, CompleteCheckpointIO, write_checkpoints_complete


class FullDisk:
    """Pickled halfway into a checkpoint, it fails as a write to a full disk does."""

    def __reduce__(self):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_checkpoint_is_written_whole_and_read_with_weights_only(tmp_path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    state = {"state_dict": {"w": torch.arange(1000.0)}, "epoch": 3}
    CompleteCheckpointIO().save_checkpoint(state, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_a_failed_write_keeps_the_earlier_checkpoint_and_leaves_nothing_beside_it(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    CompleteCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.ones(10_000)}, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointWriteError, match=f"cannot write checkpoint {path} .*No space left.*earlier one is kept"):
        CompleteCheckpointIO().save_checkpoint({"epoch": 2, "w": torch.ones(10_000), "x": FullDisk()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_only_lightnings_default_writer_is_replaced(tmp_path) -> None:
    trainer = Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
    assert type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
    write_checkpoints_complete(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, CompleteCheckpointIO)
    chosen = AsyncCheckpointIO()
    trainer = Trainer(default_root_dir=tmp_path, logger=False, accelerator="cpu", plugins=[chosen])
    write_checkpoints_complete(trainer)
    assert trainer.strategy.checkpoint_io is chosen


def test_a_save_removes_what_killed_writers_left_and_keeps_live_ones(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        left = [temporary(path, f"{socket.gethostname()}-{dead.pid}"),  # SIGKILLed mid-save
                temporary(path, f"{socket.gethostname()}-{live.pid}"),  # another run saving now
                temporary(path, f"another-host-{dead.pid}")]  # its writer's fate is unknown here
        for partial in left:
            partial.write_bytes(b"half a checkpoint")
        CompleteCheckpointIO().save_checkpoint({"epoch": 1}, path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.ckpt", left[1].name, left[2].name])
    finally:
        live.kill()
        live.wait()
