"""What counts as a trained network, and the refusal to evaluate one nobody trained.

Networks are marked by the weights they were built with (random ones saved in the real
formats: a DeepMind-port I3D file, a torchvision ResNet state dict, a Lightning
checkpoint of a VideoClassifier); modules by training and by loading a checkpoint.
"""

import pytest
import pytorch_lightning as pl
import torch
import torchvision

from lightning_modules import MultiTaskClassifier, TwoStreamClassifier, VideoClassifier
from lightning_modules.provenance import RefuseUntrainedEvaluation, UntrainedNetworkError, untrained_streams
from models import InceptionI3D, ResNetStream, export_port_state_dict
from models.weights import mark_trained, trained_weights
from tests.test_classifier import NUM_CLASSES, TinyData, tiny_builder, tiny_network


def i3d_port_file(tmp_path, num_classes: int) -> str:
    path = tmp_path / f"rgb_{num_classes}.pt"
    torch.save(export_port_state_dict(InceptionI3D(num_classes)), path)
    return str(path)


def test_an_i3d_file_with_as_many_classes_is_a_trained_network(tmp_path) -> None:
    same = i3d_port_file(tmp_path, 5)
    network = InceptionI3D(5, weights=same)
    assert same in trained_weights(network)
    network.reset_classifier(5)
    assert trained_weights(network) is None


def test_backbone_weights_under_a_fresh_classifier_are_not(tmp_path) -> None:
    # Kinetics' 7 classes fine-tuned to 5: the logits start fresh.
    assert trained_weights(InceptionI3D(5, weights=i3d_port_file(tmp_path, 7))) is None
    imagenet = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), imagenet)
    assert trained_weights(ResNetStream(5, depth=18, weights=str(imagenet))) is None
    assert trained_weights(ResNetStream(5, depth=18)) is None


def test_stream_checkpoints_mark_both_streams(tmp_path) -> None:
    paths = []
    for name, network in (("spatial", tiny_network()), ("temporal", tiny_network(4, "flow"))):
        trainer = pl.Trainer(logger=False, enable_checkpointing=False)
        trainer.strategy.connect(VideoClassifier(lambda k, net=network: net, NUM_CLASSES))
        paths.append(tmp_path / f"{name}.ckpt")
        trainer.save_checkpoint(paths[-1])
    model = TwoStreamClassifier(tiny_builder, lambda k: tiny_network(4, "flow", k), NUM_CLASSES,
                                spatial_checkpoint=str(paths[0]))
    assert untrained_streams(model) == ["the temporal stream (Backbone)"]
    model = TwoStreamClassifier.from_checkpoints(*paths, tiny_builder, lambda k: tiny_network(4, "flow", k),
                                                 NUM_CLASSES)
    assert untrained_streams(model) == []


def test_multi_task_heads_are_new_whatever_the_network_came_with() -> None:
    def marked(num_classes: int):
        network = tiny_network(num_classes=num_classes)
        mark_trained(network, "a file")
        return network

    assert untrained_streams(VideoClassifier(marked, NUM_CLASSES)) == []
    assert untrained_streams(MultiTaskClassifier(marked, [3, 2], ["a", "b"])) == ["the rgb stream (Backbone)"]


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[RefuseUntrainedEvaluation()], default_root_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_the_callback_refuses_a_random_network(stage, tmp_path) -> None:
    model = VideoClassifier(tiny_builder, NUM_CLASSES, score_file=None)
    with pytest.raises(UntrainedNetworkError, match=rf"refusing to {stage} .*the rgb stream \(Backbone\).*ckpt_path"):
        getattr(trainer(tmp_path), stage)(model, TinyData())


def test_trained_here_or_loaded_modules_are_evaluated(tmp_path) -> None:
    model = VideoClassifier(tiny_builder, NUM_CLASSES, score_file=None)
    t = trainer(tmp_path, limit_train_batches=1)
    t.fit(model, TinyData())
    t.save_checkpoint(tmp_path / "fitted.ckpt")
    assert t.test(model, TinyData(), verbose=False)[0]["test/acc"] >= 0
    fresh = VideoClassifier(tiny_builder, NUM_CLASSES, score_file=None)
    assert trainer(tmp_path).test(fresh, TinyData(), ckpt_path=tmp_path / "fitted.ckpt", verbose=False)
    loaded = VideoClassifier(tiny_builder, NUM_CLASSES, score_file=None)
    loaded.load_state_dict(torch.load(tmp_path / "fitted.ckpt", weights_only=True)["state_dict"])
    assert trainer(tmp_path).predict(loaded, TinyData())
