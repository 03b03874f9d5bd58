"""The fast GPU settings: channels-last networks and inputs, cudnn.benchmark, TF32 matmuls; none on CPU."""

import copy
import dataclasses
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cli import cli_main
from datamodules.batch import collate_test, finish_batch
from lightning_modules import gpu_settings
from lightning_modules.classifier import VideoClassifier
from lightning_modules.evaluation import Evaluation
from lightning_modules.gpu_settings import (
    GPUSettings,
    channels_last_input,
    channels_last_parameters,
    conv3d_without_cudnn,
    warn_conv3d_without_cudnn,
)
from models import InceptionI3D, ResNetStream
from models.adapt import Backbone
from models.input_spec import InputSpec, flow_pixels
from tests.test_batch import random_flow_sample
from tests.test_classifier import SIZE, NUM_CLASSES, TinyData, tiny_builder, trainer
from tests.test_configs import tiny_config

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_input_layout_is_channels_last_per_sample_and_survives_flattening_the_views() -> None:
    images, clips = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 8, 8)
    assert channels_last_input(images, 3).is_contiguous(memory_format=torch.channels_last)
    assert channels_last_input(clips, 4).is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(channels_last_input(clips, 4), clips, rtol=0, atol=0)
    same = channels_last_input(images, 3)
    assert channels_last_input(same, 3).data_ptr() == same.data_ptr()  # no copy when already so
    # Test batches carry a views axis: N x V x C x (T x) H x W; the network sees N*V views.
    for views, dims, layout in ((torch.randn(2, 5, 3, 8, 8), 3, torch.channels_last),
                                (torch.randn(1, 3, 2, 4, 8, 8), 4, torch.channels_last_3d)):
        flat = channels_last_input(views, dims).flatten(0, 1)
        assert flat.is_contiguous(memory_format=layout)
        torch.testing.assert_close(flat, views.flatten(0, 1), rtol=0, atol=0)


def test_test_views_are_given_the_layout_not_patched() -> None:
    """Test views cut on the device are replaced by views whose chunks are channels-last; the
    datamodule's views stay as they are (frozen: no one patches them)."""
    batch = collate_test([random_flow_sample(3, 2, 10, 12, seed=0)])
    views = finish_batch(batch, {"flow": flow_pixels(2, size=8)})["flow"]
    settings = GPUSettings()
    settings.input_dims = {"flow": 3}  # what setup sets on a CUDA device for a 2D flow network
    batch = {"flow": views}
    settings.inputs_channels_last(batch)
    assert batch["flow"] is not views and views.layout is None
    chunks = list(batch["flow"].chunks(5))
    assert [len(chunk) for chunk in chunks] == [5, 5, 2]
    assert all(chunk.is_contiguous(memory_format=torch.channels_last) for chunk in chunks)
    torch.testing.assert_close(torch.cat(chunks), torch.cat(list(views.chunks(5))), rtol=0, atol=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        views.layout = None


def test_parameters_by_rank_in_place() -> None:
    network = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Flatten(2), nn.Conv1d(4, 4, 1))
    weight = network[0].weight
    mixed = nn.ModuleDict({"clip": network, "frame": nn.Conv2d(3, 4, 3), "fc": nn.Linear(4, 2)})
    channels_last_parameters(mixed)
    assert mixed["clip"][0].weight is weight  # the same Parameter: optimizers keep it
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
    assert mixed["frame"].weight.is_contiguous(memory_format=torch.channels_last)
    assert mixed["fc"].weight.is_contiguous() and mixed["clip"][2].weight.is_contiguous()


@pytest.mark.parametrize("network, sample", [
    (partial(ResNetStream, depth=18), (3, 32, 32)),
    (partial(InceptionI3D, frames=8), (3, 8, 32, 32)),
], ids=["2d", "3d"])
def test_cpu_outputs_equal_with_and_without_the_memory_format(network, sample) -> None:
    """The module's training forward and its test views (N x V x ...), channels-last vs contiguous."""
    torch.manual_seed(0)
    model = VideoClassifier(network, NUM_CLASSES, evaluation=Evaluation(view_chunk_size=3, score_file=None)).eval()
    fast = copy.deepcopy(model)
    channels_last_parameters(fast)
    dims = len(sample)
    batch = {"rgb": torch.randn(2, *sample), "label": torch.tensor([0, 1])}
    views = {"rgb": torch.randn(1, 4, *sample)}
    with torch.no_grad():
        expected = model.model_step(batch)[2]["rgb"][0], model.video_scores(views)["rgb"]
        fast_batch = {**batch, "rgb": channels_last_input(batch["rgb"], dims)}
        got = (fast.model_step(fast_batch)[2]["rgb"][0],
               fast.video_scores({"rgb": channels_last_input(views["rgb"], dims)})["rgb"])
    assert fast_batch["rgb"].stride() != batch["rgb"].stride()
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


class Probe(VideoClassifier):
    """Records, inside each step, the settings the step runs under."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[dict] = []

    def record(self, stage: str, batch: dict) -> None:
        formats = {4: torch.channels_last, 5: torch.channels_last_3d}
        self.seen.append({
            "stage": stage,
            "parameters": all(p.is_contiguous(memory_format=formats[p.dim()])
                              for p in self.parameters() if p.dim() in formats),
            "input": batch["rgb"].flatten(0, batch["rgb"].dim() - self.network.input_spec.dims - 2).is_contiguous(
                memory_format=formats[self.network.input_spec.dims + 2]),
            "benchmark": torch.backends.cudnn.benchmark,
            "matmul": torch.get_float32_matmul_precision(),
        })

    def training_step(self, batch, batch_idx):
        self.record("train", batch)
        return super().training_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self.record("test", batch)
        return super().test_step(batch, batch_idx)


def test_changes_nothing_on_cpu(tmp_path) -> None:
    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    model = Probe(tiny_builder, NUM_CLASSES, evaluation=Evaluation(view_chunk_size=3, score_file=None))
    t = trainer(tmp_path, limit_train_batches=1, limit_val_batches=0, callbacks=[GPUSettings()])
    t.fit(model, TinyData())
    t.test(model, TinyData(), verbose=False)
    assert {entry["stage"] for entry in model.seen} == {"train", "test"}
    assert not any(entry["parameters"] or entry["input"] for entry in model.seen)
    assert {(entry["benchmark"], entry["matmul"]) for entry in model.seen} == {before}
    assert all(p.is_contiguous() for p in model.parameters())


class Clips(Dataset):
    """Random 3D samples (C x T x H x W; test samples with a views axis) as the datamodules give them."""

    def __init__(self, n: int = 8, views: int | None = None) -> None:
        shape = (views,) if views else ()
        self.samples = [{"rgb": torch.randn(*shape, 3, 4, SIZE, SIZE), "label": torch.tensor(i % NUM_CLASSES),
                         "index": torch.tensor(i)} for i in range(n)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return self.samples[i]


class ClipData(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(Clips(), batch_size=4)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(Clips(views=3), batch_size=2)


def tiny_clip_builder(num_classes: int) -> Backbone:
    features = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    return Backbone(features, 4, num_classes, 0.0, InputSpec("rgb", 3, dims=3, frames=4, size=SIZE))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("network, data", [(tiny_builder, TinyData), (tiny_clip_builder, ClipData)],
                         ids=["2d", "3d"])
def test_applied_on_cuda_and_restored_after(network, data, tmp_path) -> None:
    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    model = Probe(network, NUM_CLASSES, evaluation=Evaluation(view_chunk_size=2, score_file=None))
    t = pl.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_epochs=1, limit_train_batches=2,
                   limit_val_batches=0, callbacks=[GPUSettings()], logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, default_root_dir=tmp_path)
    t.fit(model, data())
    t.test(model, data(), verbose=False)
    assert {entry["stage"] for entry in model.seen} == {"train", "test"}
    for entry in model.seen:
        assert entry["parameters"] and entry["input"], entry
        assert entry["benchmark"] and entry["matmul"] == "high", entry
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before


@pytest.mark.parametrize("version, cudnn, affected", [
    ("2.8.0+cu128", 91002, False),
    ("2.9.0+cu128", 91002, True),   # every 2.9.0 wheel (built with cuDNN 9.10 or 9.13)
    ("2.9.0+cu130", 91500, True),   # a newer cuDNN does not help 2.9.0: it checked its build's
    ("2.9.0a0+git1234", 90701, False),
    ("2.9.1+cu128", 91002, True),   # 2.9.1 checks the loaded cuDNN; its wheels bring 9.10 / 9.13
    ("2.9.1+cu128", 91501, False),  # ... and spares 9.15 and later
    ("2.10.0+cu130", 91501, False),
    ("2.15.0", 92600, False),
    ("2.9.0", None, False),         # no cuDNN: no regression to speak of
])
def test_affected_versions(version, cudnn, affected) -> None:
    assert conv3d_without_cudnn(version, cudnn) is affected


def test_warns_once_for_a_3d_network_on_an_affected_torch(monkeypatch) -> None:
    monkeypatch.setattr(gpu_settings, "_warned_conv3d", False)
    monkeypatch.setattr(torch, "__version__", "2.9.0+cu128")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    clip_net, image_net = nn.Conv3d(3, 4, 3), nn.Conv2d(3, 4, 3)
    assert not warn_conv3d_without_cudnn(image_net, "bf16-mixed")
    assert not warn_conv3d_without_cudnn(clip_net, "32-true")  # fp32 3D convolutions keep cuDNN
    with pytest.warns(UserWarning, match=r"torch 2\.9\.0\+cu128 .*pytorch#166122.*pip install -U torch"):
        assert warn_conv3d_without_cudnn(clip_net, "bf16-mixed")
    assert not warn_conv3d_without_cudnn(clip_net, "16-mixed")  # once per process
    monkeypatch.setattr(gpu_settings, "_warned_conv3d", False)
    monkeypatch.setattr(torch, "__version__", "2.10.0+cu130")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91501)
    assert not warn_conv3d_without_cudnn(clip_net, "bf16-mixed")


def test_on_in_every_cli_run_and_switchable_off(ucf101_tiny, tmp_path) -> None:
    config = str(tiny_config("quickstart", {"UCF101DataModule": ucf101_tiny}, tmp_path))
    (default,) = [c for c in cli_main(["--config", config], run=False).trainer.callbacks if isinstance(c, GPUSettings)]
    assert (default.channels_last, default.cudnn_benchmark, default.float32_matmul_precision) == (True, True, "high")
    off = cli_main(["--config", config, "--gpu_settings.channels_last", "false", "--gpu_settings.cudnn_benchmark",
                    "false", "--gpu_settings.float32_matmul_precision", "highest"], run=False)
    (settings,) = [c for c in off.trainer.callbacks if isinstance(c, GPUSettings)]
    assert (settings.channels_last, settings.cudnn_benchmark, settings.float32_matmul_precision) == (
        False, False, "highest")
