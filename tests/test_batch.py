"""uint8 batches finished on the device: test views cut chunk by chunk, scores unchanged.

``reference_views`` is the host path this replaced (issue 11), kept here as the pin: each
view cropped, flipped and converted on its own, flow dequantized by ``flow.codec`` in
numpy. The device path must give the same views and the same test scores.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
from pytorch_lightning.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision
import torch
import torchvision.transforms.v2.functional as F
from torch import nn
from torch.utils.data import default_collate

from datamodules import Augmentation, EvalProtocol, LoaderSettings, Roots, VideoDataModule
from datamodules.annotations import UCF101
from datamodules.batch import collate_test, finish_batch, input_dtype
from datamodules.test_views import TestViews
from datamodules.inputs import as_bits, from_bits, quantization
from flow.codec import dequantize
from lightning_modules import VideoClassifier
from lightning_modules.evaluation import Evaluation
from lightning_modules.evaluation.scores import load_video_scores
from models.input_spec import InputSpec, flow_pixels, symmetric_rgb


def reference_views(sample: dict, key: str, spec: InputSpec, subtract_mean: bool) -> torch.Tensor:
    """The float32 (V, ...) views of one test sample as the host built them before issue 11."""
    views = []
    for position in sample[key]:
        for top, left, height, width, flip in sample["views"].tolist():
            crop = position[..., top:top + height, left:left + width].clone()
            if flip:
                crop = crop.flip(-1)
                if key == "flow":
                    crop[:, 0] = 255 - crop[:, 0]
            if key == "rgb":
                x = F.normalize(crop.float() / 255.0, list(spec.mean), list(spec.std))
                views.append(x[0] if spec.dims == 2 else x.transpose(0, 1))
                continue
            bound = sample.get("bound", float(from_bits(sample["flow_quantization"])[1]))  # as meta.json says it
            flow = torch.from_numpy(dequantize(crop.numpy(), bound))
            flow *= from_bits(sample["flow_scale"]).view(2, 1, 1)
            if subtract_mean:
                flow -= flow.mean(dim=(-2, -1), keepdim=True)
            if spec.flow_clip is not None:
                flow.clamp_(-spec.flow_clip, spec.flow_clip)
            flow = F.normalize(flow * spec.flow_scale, list(spec.mean), list(spec.std)).transpose(0, 1)
            views.append(flow if spec.dims == 3 else flow.reshape(-1, *flow.shape[2:]))
    return torch.stack(views)


def random_flow_sample(positions: int, fields: int, height: int, width: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    boxes = [[0, 0, 8, 8, 0], [2, 3, 8, 8, 0], [0, 0, 8, 8, 1], [height - 8, width - 8, 8, 8, 1]]
    return {"flow": torch.randint(0, 256, (positions, fields, 2, height, width), dtype=torch.uint8, generator=generator),
            "flow_quantization": as_bits(quantization(20.0 - seed - 0.3)[0]), "bound": 20.0 - seed - 0.3,
            "flow_scale": as_bits(torch.tensor([1.25, 256 / 240])),
            "views": torch.tensor(boxes), "label": seed, "index": seed}


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_views_equal_the_host_paths_whatever_the_chunk(chunk):
    samples = [random_flow_sample(3, 2, 10, 12, seed=0), random_flow_sample(3, 2, 12, 11, seed=1)]  # sizes differ
    spec = flow_pixels(2, size=8)
    views = finish_batch(collate_test(samples), {"flow": spec})["flow"]
    assert isinstance(views, TestViews) and views.shape == (2, 12)
    chunks = list(views.chunks(chunk))
    assert max(len(c) for c in chunks) <= chunk
    got = torch.cat(chunks).reshape(2, 12, 4, 8, 8)
    for n, sample in enumerate(samples):
        torch.testing.assert_close(got[n], reference_views(sample, "flow", spec, subtract_mean=True), rtol=0, atol=1e-6)


def test_3d_rgb_clips_times_crops_equal_the_host_path():
    generator = torch.Generator().manual_seed(3)
    sample = {"rgb": torch.randint(0, 256, (2, 4, 3, 9, 13), dtype=torch.uint8, generator=generator),
              "views": torch.tensor([[0, 0, 8, 8, 0], [0, 2, 8, 8, 0], [1, 5, 8, 8, 0]]), "label": 0, "index": 0}
    spec = symmetric_rgb(frames=4, size=8)
    views = finish_batch(collate_test([sample]), {"rgb": spec})["rgb"].materialise()
    assert views.shape == (1, 6, 3, 4, 8, 8)
    torch.testing.assert_close(views[0], reference_views(sample, "rgb", spec, subtract_mean=False), rtol=0, atol=0)


def test_selecting_videos_by_mask_keeps_their_bounds():
    samples = [random_flow_sample(2, 1, 10, 11, seed=s) for s in range(3)]
    spec = flow_pixels(1, size=8)
    views = finish_batch(collate_test(samples), {"flow": spec})["flow"]
    kept = views[torch.tensor([False, True, True])]
    assert kept.shape == (2, 8)
    torch.testing.assert_close(kept.materialise()[1], reference_views(samples[2], "flow", spec, True), rtol=0, atol=1e-6)
    with pytest.raises(IndexError, match="boolean mask"):
        views[[0, 1]]


def test_finish_leaves_finished_keys_and_names_a_missing_spec():
    batch = {"rgb": torch.zeros(2, 3, 8, 8), "label": torch.tensor([0, 1])}
    assert finish_batch(batch, {})["rgb"] is batch["rgb"]
    uint8 = default_collate([{"rgb": torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "label": 0}])
    with pytest.raises(KeyError, match="rgb"):
        finish_batch(uint8, {"flow": flow_pixels(1, size=8)})


class TinyFlowNet(nn.Module):
    def __init__(self, num_classes: int, fields: int = 4, size: int = 32):
        super().__init__()
        self.input_spec = flow_pixels(fields, size=size)
        self.conv = nn.Conv2d(2 * fields, 8, 3, stride=2)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))

    def get_classifier(self) -> nn.Module:
        return self.fc


@pytest.mark.gpu
def test_views_cut_on_the_gpu_equal_the_cpus():
    samples = [random_flow_sample(3, 2, 10, 12, seed=0), random_flow_sample(3, 2, 12, 11, seed=1)]
    spec = flow_pixels(2, size=8)
    on_cpu = finish_batch(collate_test(samples), {"flow": spec})["flow"].materialise(chunk_size=5)
    batch = collate_test(samples)
    batch = {key: [v.cuda() for v in value] if isinstance(value, list) else value.cuda() for key, value in batch.items()}
    on_gpu = finish_batch(batch, {"flow": spec})["flow"]
    assert on_gpu.positions[0].dtype == torch.uint8 and on_gpu.positions[0].is_cuda  # uint8 travelled
    torch.testing.assert_close(on_gpu.materialise(chunk_size=5).cpu(), on_cpu, rtol=0, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true"])
def test_true_precisions_cast_the_inputs_never_the_dequantization(precision):
    """Lightning casts the host batch to the network's dtype before the transfer (uint8 now):
    the inputs made on the device are cast as it would have, and the carried quantization
    and stretch (256/240 is 1.0703 in bfloat16) reach the device exact."""
    plugin = HalfPrecision(precision) if precision != "64-true" else DoublePrecision()
    dtype = input_dtype(SimpleNamespace(precision_plugin=plugin))
    assert dtype == {"bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}[precision]
    spec = flow_pixels(2, size=8)
    samples = [random_flow_sample(3, 2, 10, 12, seed=0), random_flow_sample(3, 2, 12, 11, seed=1)]
    got = finish_batch(plugin.convert_input(collate_test(samples)), {"flow": spec}, dtype=dtype)["flow"].materialise()
    exact = finish_batch(collate_test(samples), {"flow": spec})["flow"].materialise()
    assert got.dtype == dtype and torch.equal(got, exact.to(dtype))
    train = [{**sample, "flow": sample["flow"][0, :, :, :8, :8]} for sample in samples]
    for sample in train:
        del sample["views"]
    got = finish_batch(plugin.convert_input(default_collate(train)), {"flow": spec}, dtype=dtype)["flow"]
    assert torch.equal(got, finish_batch(default_collate(train), {"flow": spec})["flow"].to(dtype))
    assert input_dtype(SimpleNamespace(precision_plugin=MixedPrecision("bf16-mixed", "cpu"))) is None


def tiny_flow_test(ucf101_tiny, tmp_path, **trainer_settings) -> tuple[np.ndarray, np.ndarray]:
    """(scores a Lightning test wrote, scores of the same network on the host-built views)."""
    data, flow_root = ucf101_tiny
    # Flow of 4 fields at 32 px: the network's InputSpec says so (TinyFlowNet).
    dm = VideoDataModule(UCF101(str(data.annotation_dir)),
                         Roots(str(data.video_root), str(flow_root), cache_dir=str(tmp_path / "cache")),
                         augment=Augmentation(short_side=40), test=EvalProtocol(positions=3),
                         loader=LoaderSettings(test_batch_size=2, num_workers=0, pin_memory=False))
    torch.manual_seed(0)
    net = TinyFlowNet(dm.num_classes)
    model = VideoClassifier(lambda classes: net, dm.num_classes, evaluation=Evaluation(view_chunk_size=7))
    model.weights_origin = "test"  # random weights on purpose: the test compares two paths of one network
    trainer = pl.Trainer(default_root_dir=tmp_path, devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, **trainer_settings)
    trainer.test(model, dm)
    written = load_video_scores(next(tmp_path.rglob("test_scores.npz")))
    dataset = dm.datasets["test"]
    net.cpu().float().eval()
    with torch.no_grad():
        expected = [net(reference_views(dataset[i], "flow", net.input_spec, subtract_mean=True)).softmax(-1).mean(0)
                    for i in range(len(dataset))]
    return written["scores_flow"], torch.stack(expected).numpy()


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_lightning_test_scores_equal_the_host_paths(ucf101_tiny, tmp_path, accelerator):
    """The scores a Lightning test writes (uint8 to the device, views cut per chunk) equal those
    of the network on the host-built views, video by video: the scores did not change."""
    written, expected = tiny_flow_test(ucf101_tiny, tmp_path, accelerator=accelerator, precision="32-true")
    # cuDNN convolutions run in TF32 by default: the GPU's scores are close, the CPU's equal.
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if accelerator == "cpu" else {"rtol": 0, "atol": 2e-3}
    np.testing.assert_allclose(written, expected, **tolerance)


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_a_true_precision_test_runs_and_scores_as_the_host_path(ucf101_tiny, tmp_path, precision):
    written, expected = tiny_flow_test(ucf101_tiny, tmp_path, accelerator="cpu", precision=precision)
    np.testing.assert_allclose(written, expected, atol=1e-6 if precision == "64-true" else 3e-2)
