import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.multi_task import MultiTaskClassifier
from lightning_modules.video_scores import load_video_scores
from models import InceptionI3D
from tests.test_classifier import TinyData, tiny_builder, trainer

NUM_CLASSES, NAMES = [3, 2], ["ucf101", "hmdb51"]


def multi_task(**kwargs) -> MultiTaskClassifier:
    return MultiTaskClassifier(tiny_builder, NUM_CLASSES, NAMES, view_chunk_size=3, **kwargs)


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


def test_a_checkpoint_of_i3d_heads_saved_as_logits_convs_loads(tmp_path):
    def i3d(num_classes: int) -> InceptionI3D:
        return InceptionI3D(num_classes, frames=8, dropout=0.0)

    model = MultiTaskClassifier(i3d, NUM_CLASSES, NAMES).eval()
    # The earlier format: each head a copy of I3D's logits layer, a biased 1x1x1 conv.
    state = {key: value for key, value in model.state_dict().items() if not key.startswith("heads.")}
    for d, head in enumerate(model.heads):
        state[f"heads.{d}.conv3d.weight"] = head.weight.detach().clone()[:, :, None, None, None]
        state[f"heads.{d}.conv3d.bias"] = head.bias.detach().clone()
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.5.0"}, path)
    loaded = MultiTaskClassifier.load_from_checkpoint(path, network=i3d, num_classes=NUM_CLASSES,
                                                      dataset_names=NAMES).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        for d in range(len(NAMES)):
            torch.testing.assert_close(loaded.features_to_logits(x, d), model.features_to_logits(x, d))
