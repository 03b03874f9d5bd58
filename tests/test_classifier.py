import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_modules.classifier import StreamsModule, VideoClassifier
from lightning_modules.evaluation import Evaluation
from lightning_modules.evaluation.scores import load_video_scores
from lightning_modules.evaluation.views import video_scores
from lightning_modules.optim import classifier_name, parameter_groups
from lightning_modules.provenance import load_network_weights
from models.adapt import Backbone
from models.input_spec import InputSpec

NUM_CLASSES, SIZE, VIEWS = 3, 16, 10


def tiny_network(channels: int = 3, modality: str = "rgb", num_classes: int = NUM_CLASSES) -> Backbone:
    features = nn.Sequential(nn.Conv2d(channels, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(features, 8, num_classes, 0.0, InputSpec(modality, channels, size=SIZE))


def tiny_builder(num_classes: int) -> Backbone:
    return tiny_network(num_classes=num_classes)


class Videos(Dataset):
    """Random samples as the datamodules give them; test samples carry VIEWS views."""

    def __init__(self, n: int = 8, views: int | None = None, keys: dict[str, int] = {"rgb": 3}, seed: int = 0,
                 datasets: int | None = None, num_classes: int = NUM_CLASSES):
        g = torch.Generator().manual_seed(seed)
        shape = (views,) if views else ()
        self.samples = [
            {**{key: torch.randn(*shape, c, SIZE, SIZE, generator=g) for key, c in keys.items()},
             "label": torch.tensor(i % num_classes), "index": torch.tensor(i)}
            for i in range(n)
        ]
        if datasets:
            for i, s in enumerate(self.samples):
                s["dataset"] = torch.tensor(i % datasets)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


class TinyData(pl.LightningDataModule):
    def __init__(self, keys={"rgb": 3}, n=8, **kwargs):
        super().__init__()
        self.keys, self.n, self.kwargs = keys, n, kwargs
        ids = [f"video_{i}" for i in range(n)]
        # A multi-dataset datamodule keeps one id list per dataset.
        self.test_video_ids = [ids] * kwargs["datasets"] if kwargs.get("datasets") else ids

    def train_dataloader(self):
        return DataLoader(Videos(self.n, None, self.keys, **self.kwargs), batch_size=4, shuffle=True)

    def val_dataloader(self):
        return DataLoader(Videos(self.n, None, self.keys, 1, **self.kwargs), batch_size=4)

    def test_dataloader(self):
        return DataLoader(Videos(self.n, VIEWS, self.keys, 2, **self.kwargs), batch_size=3)

    predict_dataloader = test_dataloader


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_epochs=1, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)


def test_fit_and_test_metrics_match_the_score_file(tmp_path):
    model = VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(view_chunk_size=3))
    data = TinyData()
    t = trainer(tmp_path)
    t.fit(model, data)
    assert {"train/loss_epoch", "val/loss", "val/acc", "val/acc_top5", "val/mean_class_acc"} <= set(t.logged_metrics)
    (logged,) = t.test(model, data)
    scores = load_video_scores(next(tmp_path.rglob("test_scores.npz")))
    assert scores["video_ids"].tolist() == [f"video_{i}" for i in range(8)]
    assert scores["scores_rgb"].shape == (8, NUM_CLASSES)
    expected = (scores["scores_rgb"].argmax(1) == scores["labels"]).mean()
    assert logged["test/acc"] == pytest.approx(expected)
    assert logged["test/acc_top5"] == 1.0  # 3 classes
    assert "test/mean_class_acc" in logged


def test_views_go_through_in_chunks(tmp_path):
    net = tiny_network()
    sizes = []
    net.register_forward_hook(lambda m, i, o: sizes.append(len(i[0])))
    model = VideoClassifier(lambda k: net, NUM_CLASSES, evaluation=Evaluation(view_chunk_size=3, score_file=None))
    batch = {"rgb": torch.randn(2, VIEWS, 3, SIZE, SIZE), "label": torch.tensor([0, 1]), "index": torch.tensor([0, 1])}
    model.eval()
    with torch.no_grad():
        scores = model.video_scores(batch)["rgb"]
        expected = video_scores(net(batch["rgb"].flatten(0, 1)).unflatten(0, (2, VIEWS)))
    assert max(sizes[:-1]) == 3 and sum(sizes[:-1]) == 2 * VIEWS
    torch.testing.assert_close(scores, expected)


def test_predict_gives_per_video_scores(tmp_path):
    model = VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None))
    out = trainer(tmp_path).predict(model, TinyData())
    assert out[0]["rgb"].shape == (3, NUM_CLASSES)
    torch.testing.assert_close(out[0]["rgb"].sum(1), torch.ones(3))


def test_nan_loss_stops_the_run(tmp_path):
    net = tiny_network()
    with torch.no_grad():
        net.fc.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="global step 0"):
        trainer(tmp_path, limit_val_batches=0).fit(VideoClassifier(lambda k: net, NUM_CLASSES), TinyData())


def test_backbone_learning_rate_scale_and_frozen_backbone():
    net = tiny_network()
    assert classifier_name(net) == "fc"
    model = VideoClassifier(lambda k: net, NUM_CLASSES, backbone_lr_scale=0.1)
    opt = model.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.001])
    assert opt.param_groups[0]["params"] == list(net.fc.parameters())

    frozen = VideoClassifier(tiny_builder, NUM_CLASSES, freeze_backbone=True)
    opt = frozen.configure_optimizers()["optimizer"]
    assert opt.param_groups[0]["params"] == list(frozen.network.fc.parameters()) and len(opt.param_groups) == 1
    frozen.train()
    assert not frozen.network.features.training and frozen.network.fc.training and frozen.network.training


def test_checkpoint_with_other_classes_is_a_clear_error(tmp_path):
    t = trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    t.fit(VideoClassifier(tiny_builder, NUM_CLASSES), TinyData())
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    with pytest.raises(ValueError, match="num_classes"):
        VideoClassifier.load_from_checkpoint(path, network=tiny_builder, num_classes=5)
    net = load_network_weights(tiny_network(), path)  # weights_only loading of a Lightning checkpoint
    torch.testing.assert_close(net.fc.weight, t.lightning_module.network.fc.weight)


class ResetsInPlace(Backbone):
    """A network whose reset_classifier re-initialises its classifier rather than replacing it."""

    def reset_classifier(self, num_classes: int) -> None:
        self.fc.reset_parameters()


def test_the_head_is_the_declared_classifier_whatever_reset_classifier_does():
    net = ResetsInPlace(nn.Sequential(nn.Flatten()), 12, NUM_CLASSES, 0.0, InputSpec("rgb", 3, size=2))
    head, backbone = parameter_groups(net, backbone_lr_scale=0.1)
    assert head["params"] == list(net.fc.parameters()) and backbone["params"] == []
    before = net.fc.weight.detach().clone()
    parameter_groups(net, backbone_lr_scale=0.1)
    assert torch.equal(net.fc.weight, before)  # finding the head changes nothing


def test_a_network_without_get_classifier_is_named():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, NUM_CLASSES))
    with pytest.raises(TypeError, match="Sequential has no get_classifier"):
        parameter_groups(net, backbone_lr_scale=0.1)
    assert len(parameter_groups(net)) == 1  # one learning rate needs no head


def test_the_base_takes_keywords_with_defaults():
    class OneStream(StreamsModule):
        def __init__(self, **kwargs):
            super().__init__({"rgb": ("network", "rgb")}, **kwargs)
            self.network = tiny_network()

    module = OneStream()
    assert (module.label_smoothing, module.lr_scales, module.evaluation) == (0.0, {}, Evaluation(32, "test_scores.npz"))
    assert module.video_test.score_file == "test_scores.npz"
    assert OneStream(evaluation=Evaluation(view_chunk_size=4, score_file=None)).video_test.score_file is None
    with pytest.raises(TypeError):
        StreamsModule({"rgb": ("network", "rgb")}, torch.optim.SGD)


class TinyNetwork(Backbone):
    """``tiny_network`` as a class, which a config can name (jsonargparse cannot link into functions)."""

    def __init__(self, num_classes: int, channels: int = 3, modality: str = "rgb"):
        features = nn.Sequential(nn.Conv2d(channels, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(features, 4, num_classes, 0.0, InputSpec(modality, channels, size=SIZE))


@pytest.mark.parametrize("module, own", [
    ("VideoClassifier", {"network": {"class_path": "tests.test_classifier.TinyNetwork"}, "num_classes": 3}),
    ("TwoStreamClassifier", {"spatial": {"class_path": "tests.test_classifier.TinyNetwork"},
                             "temporal": {"class_path": "tests.test_classifier.TinyNetwork",
                                          "init_args": {"channels": 4, "modality": "flow"}},
                             "num_classes": 3, "spatial_lr_scale": 0.5}),
    ("MultiTaskClassifier", {"network": {"class_path": "tests.test_classifier.TinyNetwork"}, "num_classes": [3, 2],
                             "dataset_names": ["a", "b"]}),
])
def test_every_module_reads_the_shared_settings_of_one_declaration(module, own):
    """The settings every module takes are StreamsModule's (``**shared``), read by jsonargparse from a
    config's ``model:`` block, the evaluation ones as its ``evaluation:`` block."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(StreamsModule, "model")
    shared = {"label_smoothing": 0.1, "backbone_lr_scale": 0.5,
              "evaluation": {"view_chunk_size": 5, "score_file": None}}
    config = parser.parse_object({"model": {"class_path": f"lightning_modules.{module}",
                                            "init_args": {**own, **shared}}})
    model = parser.instantiate(config).model
    assert type(model).__name__ == module
    assert (model.label_smoothing, model.backbone_lr_scale) == (0.1, 0.5)
    assert model.evaluation == Evaluation(view_chunk_size=5, score_file=None) and model.video_test.score_file is None
    with pytest.raises(Exception, match="view_chunk_size"):
        parser.parse_object({"model": {"class_path": f"lightning_modules.{module}",
                                       "init_args": {**own, "view_chunk_size": 5}}})  # the block, not a loose key
    with pytest.raises(ValueError, match="evaluation.view_chunk_size must be >= 1"):
        Evaluation(view_chunk_size=0)
