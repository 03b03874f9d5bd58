"""Trajectory stacking wired into the data module (``sampling.stacking: trajectory``): train and
test batches of a real VideoDataModule finished on the device equal ``trajectory_stack`` run by
hand on the dequantized whole fields, then cut to the crop (and mirrored, x negated, when flipped)."""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F

from datamodules.annotations import UCF101
from datamodules import batch as batches
from datamodules.batch import collate_flat, collate_test, finish_batch
from datamodules.test_views import TestViews
from datamodules.inputs import from_bits
from datamodules.trajectory import fields_to_channels, trajectory_stack
from flow.codec import dequantize
from flow.extract import ExtractionConfig, extract_many
from tests.conftest import video_datamodule

FIELDS, CROP, SHORT_SIDE = 4, 32, 40  # the tiny videos are 64 x 48: resized to 53 x 40, so x, y are stretched


def datamodule(ucf101_tiny, modality: str = "two_stream", **settings):
    data, flow_root = ucf101_tiny
    settings = {"short_side": SHORT_SIDE, "flip": True, "stacking": "trajectory", "batch_size": 4,
                "num_workers": 0, "pin_memory": False, "test_positions": 2, "cache_dir": str(flow_root / ".cache"),
                **settings}
    return video_datamodule(UCF101(str(data.annotation_dir)), modality, num_fields=FIELDS, crop_size=CROP,
                            video_root=str(data.video_root), frames_root=str(flow_root), **settings)


def by_hand(levels: torch.Tensor, quantized: torch.Tensor, scale: torch.Tensor, box, flip: bool,
            size: tuple[int, int] | None = None, backward: int = 0) -> torch.Tensor:
    """One stack's 2L-channel input: dequantized (flow.codec), stretched, trajectory-stacked whole,
    cropped, resized (multi-scale), mirrored with x negated, each field's mean subtracted."""
    step, bound = from_bits(quantized).tolist()
    fields = torch.from_numpy(dequantize(levels.numpy(), bound)) * from_bits(scale).view(1, 2, 1, 1)
    top, left, height, width = box
    stack = trajectory_stack(fields[None], backward=backward)[0, ..., top:top + height, left:left + width]
    if size is not None and tuple(size) != (height, width):
        stack = F.resize(stack, list(size), antialias=True) * torch.tensor([size[1] / width, size[0] / height]).view(
            1, 2, 1, 1)
    if flip:
        stack = stack.flip(-1) * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    stack = stack - stack.mean(dim=(-2, -1), keepdim=True)  # the two-stream spec: mean subtraction, no clip
    return fields_to_channels(stack[None])[0]


def train_batch(dm, count: int = 8) -> tuple[dict, dict]:
    """A collated training batch of ``count`` samples (raw copies kept), and it finished."""
    torch.manual_seed(0)
    dataset = dm.make_dataset("train")
    batch = collate_flat([dataset[i % len(dataset)] for i in range(count)])
    raw = {"flow": [f.clone() for f in batch["flow"]], "view": batch["flow_view"].clone(),
           "quantized": batch["flow_quantization"].clone(), "scale": batch["flow_scale"].clone()}
    return raw, dm.finish(batch)


@pytest.mark.parametrize("multiscale", [False, True])
def test_train_batch_is_the_trajectory_stack_of_the_whole_fields_cut_to_its_view(ucf101_tiny, multiscale):
    dm = datamodule(ucf101_tiny, multiscale_crop=multiscale)
    raw, finished = train_batch(dm)
    assert finished["rgb"].shape == (8, 3, CROP, CROP) and finished["flow"].shape == (8, 2 * FIELDS, CROP, CROP)
    assert raw["flow"][0].shape == (FIELDS, 2, SHORT_SIDE, 53)  # shipped uncropped
    flips = raw["view"][:, 4].tolist()
    assert 0 in flips and 1 in flips  # an unflipped and a flipped view
    for i, (top, left, height, width, flip, out_h, out_w) in enumerate(raw["view"].tolist()):
        expected = by_hand(raw["flow"][i], raw["quantized"][i], raw["scale"][i], (top, left, height, width),
                           bool(flip), (out_h, out_w))
        torch.testing.assert_close(finished["flow"][i], expected, atol=1e-5, rtol=0)


def test_test_views_cut_each_positions_whole_trajectory_stack(ucf101_tiny):
    dm = datamodule(ucf101_tiny, "flow")
    sample = dm.make_dataset("test")[0]
    positions, boxes = sample["flow"].clone(), sample["views"].tolist()
    views = dm.finish(collate_test([sample]))["flow"]
    assert isinstance(views, TestViews) and views.shape == (1, 2 * 10)
    got = views.materialise(chunk_size=7)[0]  # chunks that straddle positions and boxes
    assert any(flip for *_, flip in boxes) and not all(flip for *_, flip in boxes)
    for v, (p, k) in enumerate((p, k) for p in range(len(positions)) for k in range(len(boxes))):
        top, left, height, width, flip = boxes[k]
        expected = by_hand(positions[p], sample["flow_quantization"], sample["flow_scale"], (top, left, height, width),
                           bool(flip))
        torch.testing.assert_close(got[v], expected, atol=1e-5, rtol=0)


def test_zero_motion_trajectory_stacking_is_optical_flow_stacking(ucf101_tiny):
    """Every field at the quantized zero (a constant, so trajectories read what the pixel reads):
    the same draws finish to the same inputs whichever way they are stacked."""
    inputs = {}
    for stacking in ("trajectory", "optical_flow"):
        dm = datamodule(ucf101_tiny, "flow", stacking=stacking, flow_mean_subtraction=False)
        torch.manual_seed(0)
        dataset = dm.make_dataset("train")
        batch = collate_flat([dataset[i] for i in range(6)])
        if stacking == "trajectory":
            batch["flow"] = [torch.full_like(f, 127) for f in batch["flow"]]
        else:  # cropped and flipped by the workers: a flipped field's x levels are 255 - 127
            batch["flow"] = torch.full_like(batch["flow"], 127)
            batch["flow"][inputs["trajectory"][1][:, 4].bool(), :, 0] = 128
        inputs[stacking] = (dm.finish(batch)["flow"], batch.get("flow_view"))
    flipped = inputs["trajectory"][1][:, 4].bool()
    assert flipped.any() and not flipped.all()
    torch.testing.assert_close(inputs["trajectory"][0][~flipped], inputs["optical_flow"][0][~flipped], atol=0, rtol=0)
    # Flipped: the workers' 255 - q decodes to -f exactly in real numbers, but in float32 q * step - B
    # rounds at B's ulp (2e-6 px); the trajectory path negates the float instead.
    torch.testing.assert_close(inputs["trajectory"][0][flipped], inputs["optical_flow"][0][flipped], atol=1e-5, rtol=0)


def test_a_3d_network_is_refused_with_one_line(ucf101_tiny):
    with pytest.raises(ValueError, match=r"stacking: trajectory .* a 3D network .* use optical_flow"):
        datamodule(ucf101_tiny, "flow_clip")
    with pytest.raises(ValueError, match="sampling.stacking must be one of optical_flow, trajectory"):
        datamodule(ucf101_tiny, stacking="trajectories")


def test_trajectory_batches_are_refused_by_an_optical_flow_finish_and_back(ucf101_tiny):
    trajectory, optical = datamodule(ucf101_tiny, "flow"), datamodule(ucf101_tiny, "flow", stacking="optical_flow")
    torch.manual_seed(0)
    cropped = collate_flat([optical.make_dataset("train")[0]])
    with pytest.raises(ValueError, match="no flow_view"):
        trajectory.finish(cropped)
    assert np.isfinite(optical.finish(cropped)["flow"].numpy()).all()
    torch.manual_seed(0)
    uncropped = collate_flat([trajectory.make_dataset("train")[0]])
    with pytest.raises(ValueError, match="uncropped .* but stacking is optical_flow"):
        optical.finish(uncropped)


def test_bidirectional_stacks_walk_back_from_tau(ucf101_tiny):
    """The first L/2 fields read as backward fields (this flow is forward only: the walk, not the data, is tested)."""
    dm = datamodule(ucf101_tiny, "flow")
    raw, _ = train_batch(dm, count=2)
    batch = {"flow": raw["flow"], "flow_view": raw["view"], "flow_quantization": raw["quantized"],
             "flow_scale": raw["scale"]}
    finished = finish_batch(batch, dm.input_specs, stacking="trajectory", bidirectional=True)["flow"]
    for i, (top, left, height, width, flip, _, _) in enumerate(raw["view"].tolist()):
        expected = by_hand(raw["flow"][i], raw["quantized"][i], raw["scale"][i], (top, left, height, width),
                           bool(flip), backward=FIELDS // 2)
        torch.testing.assert_close(finished[i], expected, atol=1e-5, rtol=0)


@pytest.mark.gpu
def test_batches_finished_on_a_gpu_equal_the_cpus(ucf101_tiny):
    from pytorch_lightning.utilities import move_data_to_device

    dm = datamodule(ucf101_tiny, "flow", multiscale_crop=True)
    torch.manual_seed(0)
    train = collate_flat([dm.make_dataset("train")[i] for i in range(8)])
    test = collate_test([dm.make_dataset("test")[0]])
    for batch, inputs in ((train, lambda b: b["flow"]), (test, lambda b: b["flow"].materialise())):
        on_gpu = inputs(dm.finish(move_data_to_device(batch, "cuda")))
        torch.testing.assert_close(on_gpu.cpu(), inputs(dm.finish(batch)), atol=1e-4, rtol=0)


def test_flow_stored_with_a_too_small_bound_is_warned_once_per_video(ucf101_tiny, tmp_path, caplog):
    """Flow extracted with --bound 0.25: the synthetic motion (pixels per frame) is clipped at the bound."""
    data, _ = ucf101_tiny
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    assert extract_many(data.video_root, videos, tmp_path / "flow", ExtractionConfig(algorithm="dis", short_side=0,
                                                                                     bound=0.25),
                        progress=False).failed == 0
    dm = datamodule((data, tmp_path / "flow"), "flow", cache_dir=str(tmp_path / "cache"))
    dataset = dm.make_dataset("train")
    with caplog.at_level("WARNING", logger="datamodules.datasets"):
        dataset[0], dataset[0]
    warned = [r.getMessage() for r in caplog.records if "quantization bound +-0.25" in r.getMessage()]
    assert len(warned) == 1 and dataset.index.video_ids[0] in warned[0] and "--bound" in warned[0]
