"""What counts as a trained network, and the refusal to evaluate one nobody trained.

Modules record where their weights come from: training, loading a checkpoint of the
module, or a stream's checkpoint (random weights saved in the real formats: a Lightning
checkpoint of a VideoClassifier, a DeepMind-port I3D file). A network's own ``weights=``
never counts: it is where training starts.
"""

import ast
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lightning_modules import Evaluation, MultiTaskClassifier, TwoStreamClassifier, VideoClassifier
from lightning_modules.provenance import (
    RefuseUntrainedEvaluation,
    UntrainedNetworkError,
    require_trained,
    untrained_streams,
)
from models import InceptionI3D, export_port_state_dict
from tests.test_classifier import NUM_CLASSES, SIZE, TinyData, tiny_builder, tiny_network


def i3d_port_file(tmp_path, num_classes: int) -> str:
    path = tmp_path / f"rgb_{num_classes}.pt"
    torch.save(export_port_state_dict(InceptionI3D(num_classes)), path)
    return str(path)


def stream_checkpoints(tmp_path) -> list[str]:
    paths = []
    for name, network in (("spatial", tiny_network()), ("temporal", tiny_network(4, "flow"))):
        trainer = pl.Trainer(logger=False, enable_checkpointing=False)
        trainer.strategy.connect(VideoClassifier(lambda k, net=network: net, NUM_CLASSES))
        paths.append(str(tmp_path / f"{name}.ckpt"))
        trainer.save_checkpoint(paths[-1])
    return paths


def flow_builder(num_classes: int):
    return tiny_network(4, "flow", num_classes)


def saved(module: pl.LightningModule, path: Path) -> str:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return str(path)


def test_stream_checkpoints_count_stream_by_stream(tmp_path) -> None:
    spatial, temporal = stream_checkpoints(tmp_path)
    model = TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES, spatial_checkpoint=spatial)
    assert untrained_streams(model) == ["the temporal stream (Backbone)"]
    model = TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES, spatial_checkpoint=spatial,
                                temporal_checkpoint=temporal)
    assert untrained_streams(model) == []


def test_a_multi_task_checkpoint_gives_its_network_and_its_head_of_as_many_classes(tmp_path) -> None:
    """The two-stream paper's Table 3 fuses its multi-task temporal network's UCF-101 scores."""
    multi_task = MultiTaskClassifier(flow_builder, [NUM_CLASSES, 2], ["ucf101", "hmdb51"])
    path = saved(multi_task, tmp_path / "multi_task.ckpt")
    model = TwoStreamClassifier(tiny_builder, flow_builder, NUM_CLASSES, temporal_checkpoint=path)
    assert untrained_streams(model) == ["the spatial stream (Backbone)"]
    stacks = torch.randn(2, 4, SIZE, SIZE)
    multi_task.eval(), model.eval()
    torch.testing.assert_close(model.temporal(stacks), multi_task.heads[0](multi_task.network(stacks)))
    with pytest.raises(ValueError, match=r"heads have \[3, 2\] classes; none of them fit this network's 5"):
        TwoStreamClassifier(tiny_builder, lambda k: tiny_network(4, "flow", k), 5, temporal_checkpoint=path)


def test_init_checkpoint_starts_a_fit_from_another_tasks_network_but_its_classifier(tmp_path) -> None:
    """The two-stream paper's HMDB-51 temporal network fine-tuned from UCF-101's (Table 2)."""
    other_task = VideoClassifier(tiny_builder, NUM_CLASSES)
    path = saved(other_task, tmp_path / "ucf101.ckpt")
    model = VideoClassifier(tiny_builder, 5, init_checkpoint=path)
    conv, classifier = model.network.features[0].weight, model.network.fc.weight.clone()
    model.setup("test")  # only a fit reads it
    assert not torch.equal(conv, other_task.network.features[0].weight)
    model.setup("fit")
    torch.testing.assert_close(conv, other_task.network.features[0].weight)
    assert torch.equal(model.network.fc.weight, classifier)
    assert untrained_streams(model) == ["the rgb stream (Backbone)"]  # where training starts, not a result
    resumed = VideoClassifier(tiny_builder, 5, init_checkpoint=path)
    resumed.load_state_dict(VideoClassifier(tiny_builder, 5).state_dict())  # a loaded module keeps its weights
    kept = resumed.network.features[0].weight.clone()
    resumed.setup("fit")
    assert torch.equal(resumed.network.features[0].weight, kept)
    multi_task = saved(MultiTaskClassifier(tiny_builder, [NUM_CLASSES, 2], ["ucf101", "hmdb51"]), tmp_path / "mt.ckpt")
    VideoClassifier(tiny_builder, 5, init_checkpoint=multi_task).setup("fit")
    with pytest.raises(ValueError, match=r"features\.0\.weight: shape \(4, 3, 3, 3\) in .*ucf101.ckpt's network"):
        VideoClassifier(flow_builder, 5, init_checkpoint=path).setup("fit")


def test_an_i3d_port_file_with_as_many_classes_is_a_stream_checkpoint(tmp_path) -> None:
    same = i3d_port_file(tmp_path, NUM_CLASSES)
    model = TwoStreamClassifier(lambda k: InceptionI3D(k), lambda k: InceptionI3D(k, modality="flow"), NUM_CLASSES,
                                spatial_checkpoint=same)
    assert untrained_streams(model) == ["the temporal stream (InceptionI3D)"]
    torch.testing.assert_close(model.spatial.logits.conv3d.bias, torch.load(same, weights_only=True)["logits.conv3d.bias"])
    flow = tmp_path / "flow.pt"
    torch.save(export_port_state_dict(InceptionI3D(NUM_CLASSES, modality="flow")), flow)
    model = TwoStreamClassifier(lambda k: InceptionI3D(k), lambda k: InceptionI3D(k, modality="flow"), NUM_CLASSES,
                                spatial_checkpoint=same, temporal_checkpoint=str(flow))
    require_trained(model, "test", None)  # DeepMind's released two-stream I3D, evaluated as it is
    with pytest.raises(ValueError, match="7 classes"):  # a stream checkpoint must bring its classifier
        TwoStreamClassifier(lambda k: InceptionI3D(k), tiny_builder, NUM_CLASSES,
                            spatial_checkpoint=i3d_port_file(tmp_path, 7))


def test_a_networks_own_weights_never_count(tmp_path) -> None:
    # Even a file for as many classes: weights= is where training starts.
    same = i3d_port_file(tmp_path, NUM_CLASSES)
    assert untrained_streams(VideoClassifier(lambda k: InceptionI3D(k, weights=same), NUM_CLASSES)) == [
        "the rgb stream (InceptionI3D)"]
    assert untrained_streams(MultiTaskClassifier(tiny_builder, [3, 2], ["a", "b"])) == ["the rgb stream (Backbone)"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return ({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names})


def test_provenance_imports_no_lightning_module_and_networks_carry_no_mark() -> None:
    # The mark lived in the networks, and provenance imported the classifier that imports it: a cycle.
    root = Path(__file__).parents[1]
    assert not {name for name in imported_modules(root / "lightning_modules/provenance.py")
                if name.startswith("lightning_modules")}
    for path in (root / "models").glob("*.py"):
        assert "mark_trained" not in path.read_text() and "trained_weights" not in path.read_text(), path


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[RefuseUntrainedEvaluation()], default_root_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_the_callback_refuses_a_random_network(stage, tmp_path) -> None:
    model = VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None))
    with pytest.raises(UntrainedNetworkError, match=rf"refusing to {stage} .*the rgb stream \(Backbone\).*ckpt_path"):
        getattr(trainer(tmp_path), stage)(model, TinyData())


def test_trained_here_or_loaded_modules_are_evaluated(tmp_path) -> None:
    model = VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None))
    t = trainer(tmp_path, limit_train_batches=1)
    t.fit(model, TinyData())
    t.save_checkpoint(tmp_path / "fitted.ckpt")
    assert t.test(model, TinyData(), verbose=False)[0]["test/acc"] >= 0
    fresh = VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None))
    assert trainer(tmp_path).test(fresh, TinyData(), ckpt_path=tmp_path / "fitted.ckpt", verbose=False)
    loaded = VideoClassifier(tiny_builder, NUM_CLASSES, evaluation=Evaluation(score_file=None))
    loaded.load_state_dict(torch.load(tmp_path / "fitted.ckpt", weights_only=True)["state_dict"])
    assert trainer(tmp_path).predict(loaded, TinyData())
