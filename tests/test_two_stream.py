import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules import Augmentation, EvalProtocol, LoaderSettings, Roots, VideoDataModule
from datamodules.annotations import UCF101
from lightning_modules.classifier import VideoClassifier
from lightning_modules.evaluation import Evaluation
from lightning_modules.evaluation.fusion_table import main
from lightning_modules.evaluation.scores import load_video_scores
from lightning_modules.two_stream import TwoStreamClassifier
from models.fusion import average_fusion
from models.input_spec import flow_pixels
from tests.test_classifier import (
    NUM_CLASSES,
    SIZE,
    TinyData,
    Videos,
    tiny_builder,
    tiny_network,
    trainer,
)

KEYS = {"rgb": 3, "flow": 4}


class TwoStreamData(TinyData):
    def __init__(self, svm: bool = True):
        super().__init__(KEYS)
        if not svm:
            self.svm_train_dataloader = None

    def svm_train_dataloader(self):
        return DataLoader(Videos(self.n, 2, self.keys, 3), batch_size=4)

    def test_dataloader(self):
        # VideoDataModule's contract: the loaders the model's test also reads follow the test videos.
        extra = getattr(self.trainer.lightning_module, "extra_test_loaders", ())
        loaders = [getattr(self, f"{name}_dataloader", None) for name in extra]
        test = super().test_dataloader()
        return [test, *(loader() for loader in loaders)] if extra and all(loaders) else test


def flow_builder(num_classes: int):
    return tiny_network(4, "flow", num_classes)


def two_stream(**kwargs) -> TwoStreamClassifier:
    settings = {"evaluation": Evaluation(view_chunk_size=3), **kwargs}
    return TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES, **settings)


def test_fit_and_test_print_the_papers_table(tmp_path, capsys):
    model = two_stream(fusion_weights=(1.0, 1.5), temporal_lr_scale=2.0)
    t = trainer(tmp_path)
    t.fit(model, TwoStreamData())
    assert {"train/loss_epoch", "train/spatial/loss_epoch", "train/temporal/loss_epoch", "val/spatial/acc",
            "val/temporal/acc", "val/acc"} <= set(t.logged_metrics)
    capsys.readouterr()
    # One result per test loader (the test videos, the SVM's training videos), the same metrics in both.
    logged, again = t.test(model, TwoStreamData(), verbose=False)
    assert logged == again
    table = capsys.readouterr().out.strip().splitlines()
    assert [line.split("  ")[0].strip() for line in table[1:]] == [
        "spatial", "temporal", "fusion by averaging", "fusion by SVM"]
    assert "n/a" not in table[-1]
    scores = load_video_scores(next(tmp_path.rglob("test_scores.npz")))
    fused = average_fusion([scores["scores_spatial"], scores["scores_temporal"]], (1.0, 1.5))
    assert logged["test/fusion_avg/acc"] == pytest.approx((fused.argmax(1) == scores["labels"]).mean())
    assert logged["test/spatial/acc"] == pytest.approx((scores["scores_spatial"].argmax(1) == scores["labels"]).mean())
    assert "test/fusion_svm/acc" in logged

    # The saved score files reproduce the printed table.
    main([str(next(tmp_path.rglob("test_scores.npz"))), "--svm-train", str(next(tmp_path.rglob("test_scores_svm_train.npz"))),
          "--weights", "1", "1.5"])
    assert capsys.readouterr().out.strip().splitlines() == table


def test_learning_rate_scales_per_stream():
    opt = two_stream(spatial_lr_scale=0.5, temporal_lr_scale=2.0).configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.02])


def test_without_svm_loader_the_svm_row_is_na(tmp_path, capsys):
    t = trainer(tmp_path)
    with pytest.warns(UserWarning, match="svm_train_dataloader"):
        t.test(two_stream(evaluation=Evaluation(view_chunk_size=3, score_file=None)), TwoStreamData(svm=False),
               verbose=False)
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("n/a")


def test_stream_checkpoints_assemble_two_trained_streams(tmp_path):
    paths = []
    for name, net in (("spatial", tiny_network()), ("temporal", tiny_network(4, "flow"))):
        t = trainer(tmp_path / name, limit_train_batches=1, limit_val_batches=0)
        t.fit(VideoClassifier(lambda k: net, NUM_CLASSES), TinyData({net.input_spec.modality: net.input_spec.channels}))
        paths.append(tmp_path / f"{name}.ckpt")
        t.save_checkpoint(paths[-1])
    model = TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None),
                                spatial_checkpoint=str(paths[0]), temporal_checkpoint=str(paths[1]))
    saved = torch.load(paths[1], weights_only=True)["state_dict"]
    torch.testing.assert_close(model.temporal.fc.weight, saved["network.fc.weight"])
    logged = trainer(tmp_path).test(model, TwoStreamData())[0]
    assert 0 <= logged["test/fusion_avg/acc"] <= 1


class LoaderOfBatch(pl.Callback):
    """Which test loader the batch in flight came from (None: outside Lightning's test batches)."""

    def __init__(self) -> None:
        self.current: int | None = None

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.current = dataloader_idx

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.current = None


def test_svm_training_videos_are_scored_under_the_test_precision(ucf101_tiny, tmp_path):
    """Under bf16-mixed the SVM's training videos go through the networks in the same autocast as
    the test videos, as the test's second loader (they were scored in fp32 in on_test_start)."""
    data, frames = ucf101_tiny
    # RGB and 2 flow fields at SIZE px: the networks' InputSpecs say so.
    dm = VideoDataModule(UCF101(str(data.annotation_dir)),
                         Roots(str(data.video_root), str(frames), cache_dir=str(tmp_path / "cache")),
                         augment=Augmentation(short_side=None), test=EvalProtocol(positions=2, crops="centre",
                                                                                  svm_positions=1),
                         loader=LoaderSettings(test_batch_size=3, num_workers=0, pin_memory=False))

    def flow_net(num_classes: int):
        network = tiny_network(4, "flow", num_classes)
        network.input_spec = flow_pixels(2, SIZE)
        return network

    model = TwoStreamClassifier(tiny_builder, flow_net, dm.num_classes, evaluation=Evaluation(view_chunk_size=2))
    loader = LoaderOfBatch()
    seen = set()
    for network in (model.spatial, model.temporal):
        network.register_forward_hook(lambda module, inputs, output: seen.add((loader.current, output.dtype)))
    t = trainer(tmp_path, precision="bf16-mixed", callbacks=[loader])
    t.test(model, dm, verbose=False)
    assert seen == {(0, torch.bfloat16), (1, torch.bfloat16)}

    # Every training video scored once, named by its id; the test's score file is unchanged.
    svm_train = load_video_scores(next(tmp_path.rglob("test_scores_svm_train.npz")))
    assert svm_train["video_ids"].tolist() == dm.train_video_ids
    np.testing.assert_array_equal(svm_train["index"], np.arange(len(dm.train_video_ids)))
    scores = load_video_scores(next(tmp_path.rglob("test_scores.npz")))
    assert scores["video_ids"].tolist() == dm.test_video_ids
    assert set(scores) == set(svm_train) == {"video_ids", "labels", "index", "scores_spatial", "scores_temporal"}
