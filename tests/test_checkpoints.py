"""``last`` and ``best`` found from the checkpoint files, as a new process must find them.

Fits here use the two callbacks the CLI configures (the best by val/acc, last.ckpt every
epoch); the finders get fresh callbacks, as a later process has them.
"""

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_modules.checkpoints import (
    CheckpointFileError,
    CheckpointNotFoundError,
    check_checkpoint_file,
    find_best,
    find_last,
    resolve_ckpt_path,
)
from lightning_modules.classifier import VideoClassifier
from lightning_modules.evaluation import Evaluation
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
    trainer.fit(VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None)), TinyData())
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


def bad_copies(saved: Path) -> dict[str, Path]:
    """What a full disk, an interrupted copy or a wrong argument leaves where a checkpoint should be."""
    folder = saved.parent
    data = saved.read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (folder / "empty.ckpt").write_bytes(b"")
    (folder / "text.ckpt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\n")
    (folder / "folder.ckpt").mkdir()
    torch.save({"weights": torch.zeros(2)}, folder / "foreign.ckpt")
    state = torch.load(saved, weights_only=True)
    del state["optimizer_states"]
    torch.save(state, folder / "weights_only.ckpt")
    names = ("truncated", "empty", "text", "folder", "foreign", "weights_only", "missing")
    return {name: folder / f"{name}.ckpt" for name in names}


def test_bad_checkpoint_files_are_named_with_what_is_wrong(tmp_path) -> None:
    fit(tmp_path, max_epochs=1)
    saved = tmp_path / "last.ckpt"
    check_checkpoint_file(saved, "fit")
    check_checkpoint_file(saved, "test")
    files = bad_copies(saved)
    expected = {
        "truncated": "is truncated", "empty": "is empty (0 bytes)", "text": "is a text file, not a checkpoint",
        "folder": "is a folder", "foreign": "holds no state_dict", "missing": "no such file",
    }
    for name, words in expected.items():
        for stage in ("fit", "test"):
            with pytest.raises(CheckpointFileError, match=words.replace("(", r"\(").replace(")", r"\)")):
                check_checkpoint_file(files[name], stage)
    # Weights alone test fine but cannot resume a fit.
    check_checkpoint_file(files["weights_only"], "test")
    with pytest.raises(CheckpointFileError, match="a fit cannot resume from it"):
        check_checkpoint_file(files["weights_only"], "fit")
    # best is read from last.ckpt, which a killed copy may have cut short.
    saved.write_bytes(files["truncated"].read_bytes())
    with pytest.raises(CheckpointFileError, match="last.ckpt, which records the best, is truncated"):
        find_best(*callbacks(tmp_path))
