"""The per-video test outside the modules: groups, metrics on the gathered scores, score files and their ids."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lightning_modules.evaluation.scores import load_video_scores
from lightning_modules.evaluation.video_test import Group, VideoTest, video_ids


def module(tmp_path, test_video_ids=None) -> SimpleNamespace:
    """What ``finish`` uses of a LightningModule and its Trainer (one process, rank zero)."""
    logged: dict[str, float] = {}
    trainer = SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path), is_global_zero=True,
                              datamodule=SimpleNamespace(test_video_ids=test_video_ids))
    return SimpleNamespace(trainer=trainer, log_dict=logged.update, logged=logged)


def one_hot(labels: list[int], classes: int) -> torch.Tensor:
    return torch.eye(classes)[labels]


def test_one_group_one_stream_logs_test_acc_and_writes_the_file(tmp_path) -> None:
    owner = module(tmp_path, ["a", "b", "c", "d"])
    test = VideoTest()
    test.start()
    test.add(torch.tensor([3, 1]), torch.tensor([0, 1]), {"rgb": one_hot([0, 0], 2)})  # video 1 wrong
    test.add(torch.tensor([0, 2]), torch.tensor([1, 0]), {"rgb": one_hot([1, 0], 2)})
    results = test.finish(owner)
    assert results[""]["index"].tolist() == [0, 1, 2, 3]
    assert owner.logged["test/acc"] == pytest.approx(0.75)
    saved = load_video_scores(tmp_path / "test_scores.npz")
    assert saved["video_ids"].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(saved["scores_rgb"], results[""]["scores_rgb"])


def test_named_groups_take_their_datasets_ids_and_files(tmp_path) -> None:
    owner = module(tmp_path, [["u0", "u1"], ["h0", "h1", "h2"]])
    test = VideoTest("scores.npz")
    test.start(["ucf101", "hmdb51"])
    test.add(torch.tensor([1]), torch.tensor([0]), {"flow": one_hot([0], 3)}, group="ucf101")
    test.add(torch.tensor([2, 0]), torch.tensor([1, 1]), {"flow": one_hot([1, 0], 2)}, group="hmdb51")
    test.finish(owner)
    assert owner.logged["test/ucf101/acc"] == 1.0 and owner.logged["test/hmdb51/acc"] == 0.5
    assert load_video_scores(tmp_path / "scores_ucf101.npz")["video_ids"].tolist() == ["u1"]
    assert load_video_scores(tmp_path / "scores_hmdb51.npz")["video_ids"].tolist() == ["h0", "h2"]


def test_several_streams_are_named_and_no_file_without_a_score_file(tmp_path) -> None:
    owner = module(tmp_path)
    test = VideoTest(None)
    test.start()
    test.add(torch.tensor([0, 1]), torch.tensor([0, 1]),
             {"spatial": one_hot([0, 1], 2), "temporal": one_hot([1, 1], 2)})
    test.finish(owner)
    assert owner.logged["test/spatial/acc"] == 1.0 and owner.logged["test/temporal/acc"] == 0.5
    assert not list(tmp_path.iterdir())
    assert test.score_path(owner.trainer) is None


def test_ids_are_the_indices_without_a_datamodule(tmp_path) -> None:
    results = {"index": np.array([0, 2])}
    assert video_ids(SimpleNamespace(datamodule=None), results) == ["0", "1", "2"]
    trainer = SimpleNamespace(datamodule=SimpleNamespace(train_video_ids=("x", "y", "z")))
    assert video_ids(trainer, results, "train_video_ids") == ["x", "y", "z"]


def test_a_group_of_training_videos_is_saved_with_their_ids_and_never_logged(tmp_path) -> None:
    """The SVM's training videos (a two-stream test's second loader): their own file, rows named by
    ``train_video_ids``, no test metric (they are not test videos)."""
    owner = module(tmp_path, ["a", "b"])
    owner.trainer.datamodule.train_video_ids = ["t0", "t1", "t2"]
    test = VideoTest()
    test.start([Group(), Group("svm_train", ids="train_video_ids", metrics=False)])
    test.add(torch.tensor([1, 0]), torch.tensor([0, 1]), {"rgb": one_hot([0, 1], 2)})
    test.add(torch.tensor([2, 0]), torch.tensor([1, 1]), {"rgb": one_hot([0, 0], 2)}, group="svm_train")
    results = test.finish(owner)
    assert not any("svm_train" in key for key in owner.logged) and owner.logged["test/acc"] == 1.0
    saved = load_video_scores(tmp_path / "test_scores_svm_train.npz")
    assert saved["video_ids"].tolist() == ["t0", "t2"]
    np.testing.assert_array_equal(saved["scores_rgb"], results["svm_train"]["scores_rgb"])
    assert load_video_scores(tmp_path / "test_scores.npz")["video_ids"].tolist() == ["a", "b"]
