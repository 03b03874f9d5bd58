import pytest
import torch
from torch.utils.data import DataLoader

from lightning_modules.classifier import VideoClassifier
from lightning_modules.fusion_table import main
from lightning_modules.two_stream import TwoStreamClassifier
from lightning_modules.video_scores import load_video_scores
from models.fusion import average_fusion
from tests.test_classifier import (
    NUM_CLASSES,
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


def flow_builder(num_classes: int):
    return tiny_network(4, "flow", num_classes)


def two_stream(**kwargs) -> TwoStreamClassifier:
    return TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES, view_chunk_size=3, **kwargs)


def test_fit_and_test_print_the_papers_table(tmp_path, capsys):
    model = two_stream(fusion_weights=(1.0, 1.5), temporal_lr_scale=2.0)
    t = trainer(tmp_path)
    t.fit(model, TwoStreamData())
    assert {"train/loss_epoch", "train/spatial/loss_epoch", "train/temporal/loss_epoch", "val/spatial/acc",
            "val/temporal/acc", "val/acc"} <= set(t.logged_metrics)
    capsys.readouterr()
    (logged,) = t.test(model, TwoStreamData(), verbose=False)
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
        t.test(two_stream(score_file=None), TwoStreamData(svm=False), verbose=False)
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("n/a")


def test_from_checkpoints_assembles_two_trained_streams(tmp_path):
    paths = []
    for name, net in (("spatial", tiny_network()), ("temporal", tiny_network(4, "flow"))):
        t = trainer(tmp_path / name, limit_train_batches=1, limit_val_batches=0)
        t.fit(VideoClassifier(lambda k: net, NUM_CLASSES), TinyData({net.input_spec.modality: net.input_spec.channels}))
        paths.append(tmp_path / f"{name}.ckpt")
        t.save_checkpoint(paths[-1])
    model = TwoStreamClassifier.from_checkpoints(*paths, tiny_builder, flow_builder, NUM_CLASSES, score_file=None)
    saved = torch.load(paths[1], weights_only=True)["state_dict"]
    torch.testing.assert_close(model.temporal.fc.weight, saved["network.fc.weight"])
    (logged,) = trainer(tmp_path).test(model, TwoStreamData())
    assert 0 <= logged["test/fusion_avg/acc"] <= 1
