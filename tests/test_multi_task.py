import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.evaluation import Evaluation
from lightning_modules.evaluation.scores import load_video_scores
from lightning_modules.multi_task import MultiTaskClassifier
from tests.test_classifier import TinyData, tiny_builder, trainer

NUM_CLASSES, NAMES = [3, 2], ["ucf101", "hmdb51"]


def multi_task(**kwargs) -> MultiTaskClassifier:
    return MultiTaskClassifier(tiny_builder, NUM_CLASSES, NAMES, evaluation=Evaluation(view_chunk_size=3), **kwargs)


def test_loss_is_the_sum_of_each_heads_loss_on_its_own_samples():
    model = multi_task()
    assert [h.out_features for h in model.heads] == NUM_CLASSES and isinstance(model.network.fc, nn.Identity)
    batch = {"rgb": torch.randn(5, 3, 16, 16), "label": torch.tensor([2, 1, 0, 0, 1]),
             "dataset": torch.tensor([0, 1, 0, 1, 1]), "index": torch.arange(5)}
    model.eval()
    loss, losses, _ = model.model_step(batch)
    pre_logits = model.network(batch["rgb"])  # the network without a classifier
    ucf = F.cross_entropy(model.heads[0](pre_logits[[0, 2]]), batch["label"][[0, 2]])
    hmdb = F.cross_entropy(model.heads[1](pre_logits[[1, 3, 4]]), batch["label"][[1, 3, 4]])
    torch.testing.assert_close(losses["ucf101"], ucf)
    torch.testing.assert_close(losses["hmdb51"], hmdb)
    torch.testing.assert_close(loss, ucf + hmdb)


def test_the_network_and_the_step_compile_as_one_graph_each():
    # The network is a plain module again (its classifier slot was emptied between forwards).
    model = multi_task().eval()
    batch = {"rgb": torch.randn(4, 3, 16, 16), "label": torch.tensor([2, 1, 0, 0]),
             "dataset": torch.tensor([0, 1, 0, 1]), "index": torch.arange(4)}
    torch._dynamo.reset()
    network = torch.compile(model.network, backend="eager", fullgraph=True)
    torch.testing.assert_close(network(batch["rgb"]), model.network.forward_head(
        model.network.forward_features(batch["rgb"]), pre_logits=True))
    step = torch.compile(lambda b: model.model_step(b)[0], backend="eager", fullgraph=True)
    torch.testing.assert_close(step(batch), model.model_step(batch)[0])


def test_fit_and_test_per_dataset(tmp_path):
    model = multi_task()
    data = TinyData(datasets=2, num_classes=2)
    t = trainer(tmp_path)
    t.fit(model, data)
    assert {"val/ucf101/acc", "val/hmdb51/acc", "val/hmdb51/mean_class_acc", "train/ucf101/loss_epoch"} <= set(
        t.logged_metrics)
    (logged,) = t.test(model, data, verbose=False)
    for name in NAMES:
        scores = load_video_scores(next(tmp_path.rglob(f"test_scores_{name}.npz")))
        assert scores["scores_rgb"].shape == (4, NUM_CLASSES[NAMES.index(name)])
        expected = (scores["scores_rgb"].argmax(1) == scores["labels"]).mean()
        assert logged[f"test/{name}/acc"] == pytest.approx(expected)
    assert load_video_scores(next(tmp_path.rglob("test_scores_hmdb51.npz")))["index"].tolist() == [1, 3, 5, 7]


def test_backbone_learning_rate_scale():
    opt = multi_task(backbone_lr_scale=0.1).configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.001])


def test_a_frozen_shared_network_is_refused():
    with pytest.raises(ValueError, match="freeze_backbone is not supported"):
        multi_task(freeze_backbone=True)
