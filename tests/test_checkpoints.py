"""``last`` and ``best`` found from the checkpoint files, as a new process must find them.

Fits here use the two callbacks the CLI configures (the best by val/acc, last.ckpt every
epoch); the finders get fresh callbacks, as a later process has them.
"""

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_modules.checkpoints import CheckpointNotFoundError, find_best, find_last, resolve_ckpt_path
from lightning_modules.classifier import VideoClassifier
from tests.test_classifier import NUM_CLASSES, TinyData, tiny_builder


def callbacks(folder) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    best = ModelCheckpoint(folder, "epoch{epoch:03d}-acc{val/acc:.4f}", monitor="val/acc", mode="max",
                           auto_insert_metric_name=False)
    last = ModelCheckpoint(folder, "last", save_on_exception=True, enable_version_counter=False,
                           save_on_train_epoch_end=True)
    return best, last


def fit(folder, **kwargs) -> ModelCheckpoint:
    best, last = callbacks(folder)
    trainer = pl.Trainer(accelerator="cpu", logger=False, callbacks=[best, last], enable_progress_bar=False,
                         enable_model_summary=False, limit_train_batches=1, **kwargs)
    trainer.fit(VideoClassifier(tiny_builder, NUM_CLASSES, score_file=None), TinyData())
    return best


def test_best_is_the_fits_best_also_in_a_copied_folder(tmp_path) -> None:
    fitted = fit(tmp_path / "checkpoints", max_epochs=4)
    assert len(list((tmp_path / "checkpoints").glob("epoch*.ckpt"))) == 1
    assert find_best(*callbacks(tmp_path / "checkpoints")) == Path(fitted.best_model_path)
    assert find_last(callbacks(tmp_path / "checkpoints")[1]) == tmp_path / "checkpoints" / "last.ckpt"
    # Another machine, another folder: the recorded absolute path is gone, the file is there by name.
    shutil.move(tmp_path / "checkpoints", tmp_path / "moved")
    best = find_best(*callbacks(tmp_path / "moved"))
    assert best == tmp_path / "moved" / Path(fitted.best_model_path).name


def test_no_last_checkpoint_names_the_folder(tmp_path) -> None:
    folder = tmp_path / "never_trained" / "checkpoints"
    with pytest.raises(CheckpointNotFoundError, match=f"last.ckpt is not in {folder}, which does not exist"):
        find_last(callbacks(folder)[1])
    with pytest.raises(CheckpointNotFoundError, match=f"last.ckpt, which records it, is not in {folder}"):
        find_best(*callbacks(folder))
    # A job may always pass --ckpt_path last: the first fit starts from scratch.
    assert resolve_ckpt_path("last", *callbacks(folder), stage="fit") is None
    with pytest.raises(CheckpointNotFoundError):
        resolve_ckpt_path("last", *callbacks(folder), stage="test")
    assert resolve_ckpt_path("some.ckpt", *callbacks(folder), stage="test") == "some.ckpt"
    assert resolve_ckpt_path(None, *callbacks(folder), stage="test") is None


def test_a_fit_that_never_validated_has_no_best(tmp_path) -> None:
    # Validation every 2 epochs, 1 epoch run: last.ckpt is written all the same, no best yet.
    fit(tmp_path, max_epochs=1, check_val_every_n_epoch=2)
    assert find_last(callbacks(tmp_path)[1]).is_file()
    with pytest.raises(CheckpointNotFoundError, match="records none by 'val/acc'.*after its first validation"):
        find_best(*callbacks(tmp_path))
