"""The GPU paths on a real CUDA device: ``python -m pytest -m gpu``.

Every test here is marked ``gpu`` and skipped, with the reason shown, where CUDA is
absent (tests/conftest.py). What runs on a GPU machine:

- a 2D config (the quickstart's two-stream ResNet-18) and a 3D config (RGB I3D on
  clips) fit and test on cuda in bf16-mixed, the precision the CLI picks on a GPU;
- the 25 x 10 test of one checkpoint gives the same per-video scores on cuda in bf16
  as on the CPU in fp32, within bf16's tolerance, and the same top-1 wherever the
  CPU's margin is larger than that tolerance;
- RAFT (random weights in torchvision's state-dict format) on cuda, alone and
  through ``python -m flow extract``, agrees with RAFT on the CPU.

Checkpoints are explicit files written by the test (``--ckpt_path FILE``); every run
happens in a scratch working directory, so relative paths in the configs stay there.
"""

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import Callback
from test_configs import tiny_config
from torch import nn

from cli import cli_main
from flow import DEFAULT_BOUND, FolderFlowStore, dequantize
from flow.__main__ import main as flow_main
from flow.algorithms import create_algorithm
from flow.extract import ExtractionConfig, open_video
from lightning_modules.evaluation.scores import load_video_scores

pytestmark = pytest.mark.gpu

ON_CUDA = ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
ON_CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true"]
# Softmax scores (in [0, 1], averaged over 250 views) of a bf16 run against fp32. bf16 keeps
# 8 significant bits: a logit near 4 is rounded by up to 2^-6 = 0.016, and every layer below
# it rounds too; a score moves by p(1 - p) times its logit's error, at most a quarter of it.
# Measured with bf16 autocast on the CPU (the same rounding, other kernels) on the checkpoint
# of `two_stream_on_cuda`: at most 2.1e-3 (mean 2.4e-4) from fp32; 2e-2 leaves ten times
# that for cuDNN's kernels and algorithm choices, an absolute bound because scores near 0 or 1
# are as exact as the others. The top-1 check then covers every video whose CPU margin
# exceeds 4e-2, one run's scores moving by at most 2e-2 each.
SCORE_ATOL = 2e-2


class RecordLayerOutputs(Callback):
    """Device and dtype of every convolution's and linear layer's output during test: what the
    networks ran in (under bf16 autocast both give bf16)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, torch.dtype]] = set()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for module in pl_module.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                module.register_forward_hook(lambda _m, _i, out: self.seen.add((out.device.type, out.dtype)))


@dataclass
class ScoredRun:
    scores: dict[str, np.ndarray]
    layer_outputs: set[tuple[str, torch.dtype]]


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path)
        yield


def gpu_config(name: str, datasets: dict[str, tuple], folder: Path, trainer: dict[str, Any],
               loader: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
               input_size: int | None = None) -> Path:
    """configs/<name>.yaml on the tiny datasets (as tests/test_configs.py shrinks it) with these
    trainer, data loader and model settings and the networks' input size, tested with the
    config's own protocol (2D: 25 x 10)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(tiny_config(name, datasets, folder).read_text())
    config["trainer"].pop("fast_dev_run")
    config["trainer"].update(enable_progress_bar=False, enable_model_summary=False, **trainer, callbacks=[
        *config["trainer"].get("callbacks", []), {"class_path": f"{__name__}.RecordLayerOutputs"}])
    del config["data"]["init_args"]["test"]["positions"]  # tiny_config's 2: back to the config's (the paper's 25)
    config["data"]["init_args"]["loader"].update(loader or {})
    config["model"]["init_args"].update(model or {})
    for key in ("network", "spatial", "temporal"):
        if input_size is not None and key in config["model"]["init_args"]:
            config["model"]["init_args"][key]["init_args"]["input_size"] = input_size
    path = folder / f"{name}_gpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(config: Path, checkpoint: Path, *device: str) -> None:
    """Fit on ``device`` and save the result to ``checkpoint`` (our own file: this does not
    depend on where the checkpoint callbacks put theirs)."""
    with working_directory(config.parent):
        cli = cli_main(["fit", "--config", str(config), *device])
    assert cli.trainer.state.finished and cli.trainer.global_step > 0
    cli.trainer.save_checkpoint(checkpoint)


def scored_on(config: Path, checkpoint: Path, *device: str) -> ScoredRun:
    with working_directory(config.parent):
        cli = cli_main(["test", "--config", str(config), "--ckpt_path", str(checkpoint), *device])
    recorder = next(c for c in cli.trainer.callbacks if isinstance(c, RecordLayerOutputs))
    return ScoredRun(load_video_scores(config.parent / "runs" / config.stem / "test_scores.npz"), recorder.seen)


def assert_valid_scores(scores: dict[str, np.ndarray], streams: list[str], num_classes: int) -> None:
    assert len(scores["video_ids"]) > 0
    for stream in streams:
        values = scores[f"scores_{stream}"]
        assert values.shape == (len(scores["video_ids"]), num_classes), stream
        assert np.isfinite(values).all(), stream
        np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-3)


@pytest.fixture(scope="module")
def bf16_capable() -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")


@pytest.fixture(scope="module")
def two_stream_on_cuda(bf16_capable, ucf101_tiny, tmp_path_factory) -> tuple[Path, Path, ScoredRun]:
    """The quickstart's two streams fitted on cuda in bf16, and their 25 x 10 test on cuda.

    Trained until the scores say something (on the CPU in bf16: 50% top-1 per stream, 75%
    fused): all 8 training videos in one batch and 48 px crops, because batch norm over 2
    samples of a 1 x 1 final map (tiny_config's batch and 32 px crops) ends in a network
    that gives every video one class with probability 1 (and its bf16 training diverged);
    label smoothing keeps the optimum off saturated scores."""
    folder = tmp_path_factory.mktemp("two_stream")
    config = gpu_config("quickstart", {"UCF101DataModule": ucf101_tiny}, folder, trainer={"max_epochs": 20},
                        loader={"batch_size": 8}, model={"label_smoothing": 0.2}, input_size=48)
    checkpoint = folder / "fitted.ckpt"
    fit(config, checkpoint, *ON_CUDA)
    return config, checkpoint, scored_on(config, checkpoint, *ON_CUDA)


def test_2d_two_stream_fits_and_tests_on_cuda_in_bf16(two_stream_on_cuda, ucf101_tiny) -> None:
    _, _, run = two_stream_on_cuda
    assert run.layer_outputs == {("cuda", torch.bfloat16)}
    assert_valid_scores(run.scores, ["spatial", "temporal"], len(ucf101_tiny[0].classes))


def test_3d_i3d_fits_and_tests_on_cuda_in_bf16(bf16_capable, kinetics_tiny, tmp_path) -> None:
    config = gpu_config("i3d_rgb_kinetics400", {"KineticsDataModule": kinetics_tiny}, tmp_path,
                        trainer={"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1})
    fit(config, tmp_path / "fitted.ckpt", *ON_CUDA)
    run = scored_on(config, tmp_path / "fitted.ckpt", *ON_CUDA)
    assert run.layer_outputs == {("cuda", torch.bfloat16)}
    assert_valid_scores(run.scores, ["rgb"], len(kinetics_tiny[0].classes))


def test_25x10_scores_on_cuda_in_bf16_equal_cpu_scores_in_fp32(two_stream_on_cuda) -> None:
    config, checkpoint, on_cuda = two_stream_on_cuda
    on_cpu = scored_on(config, checkpoint, *ON_CPU)
    assert on_cpu.layer_outputs == {("cpu", torch.float32)}
    gpu, cpu = on_cuda.scores, on_cpu.scores
    for key in ("video_ids", "labels", "index"):
        np.testing.assert_array_equal(gpu[key], cpu[key])
    decided = 0
    for stream in ("spatial", "temporal"):
        expected, actual = cpu[f"scores_{stream}"], gpu[f"scores_{stream}"]
        assert expected.max(1).mean() > 0.4, f"{stream}: near-uniform scores would make this comparison empty"
        np.testing.assert_allclose(actual, expected, rtol=0, atol=SCORE_ATOL, err_msg=stream)
        # Where the CPU's first two scores are further apart than both runs can move, the top-1 cannot change.
        top2 = np.sort(expected, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * SCORE_ATOL
        np.testing.assert_array_equal(actual[clear].argmax(1), expected[clear].argmax(1), err_msg=stream)
        decided += int(clear.sum())
    assert decided > 0, "no video had a clear top-1: the top-1 check compared nothing"


# RAFT on cuda against the CPU, both fp32 (RAFT runs without autocast). cuDNN convolutions
# may use TF32 (PyTorch's default for them: a 10-bit mantissa); that rounding, emulated in
# every convolution on the CPU, moved this random RAFT-Large's flow on the tiny video by
# 0.006 px at most (mean 0.0013 px; flow up to 6.6 px), and its extracted JPEG flow by
# 0.003 px on average, 3e-5 of the values by 2 levels, none by more. The bounds below leave
# room for cuDNN's and grid_sample's own kernels; a wrong device, padding or input scaling
# moves flow by pixels.
RAFT_MAX_PX, RAFT_MEAN_PX = 0.25, 0.05
STEP_PX = 2 * DEFAULT_BOUND / 255  # one quantization level


@pytest.fixture(scope="module")
def raft_weights(tmp_path_factory) -> Path:
    """A random RAFT-Large saved as torchvision's weights file is: a plain state dict."""
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_large_random.pth"
    torch.save(raft_large(weights=None).state_dict(), path)
    return path


def test_raft_on_cuda_matches_the_cpu(raft_weights, ucf101_tiny) -> None:
    data, _ = ucf101_tiny
    frames = [frame.rgb for frame in open_video(data.videos[0], ExtractionConfig(short_side=0), gray=False, rgb=True)]
    on = {device: create_algorithm("raft", weights=str(raft_weights), device=device) for device in ("cpu", "cuda")}
    for prev, nxt in itertools.pairwise(frames[:4]):
        expected, actual = on["cpu"](prev, nxt), on["cuda"](prev, nxt)
        assert actual.shape == expected.shape == (*prev.shape[:2], 2) and actual.dtype == np.float32
        assert np.isfinite(actual).all() and np.abs(expected).max() > 1.0
        error = np.abs(actual - expected)
        assert error.max() < RAFT_MAX_PX and error.mean() < RAFT_MEAN_PX, (error.max(), error.mean())


def test_flow_extract_with_raft_on_cuda_matches_the_cpu(raft_weights, ucf101_tiny, tmp_path) -> None:
    data, _ = ucf101_tiny
    video = data.videos[0].relative_to(data.video_root).as_posix()
    on_cpu, on_cuda = (extract_with_raft(data.video_root, video, tmp_path / device, raft_weights, device)
                       for device in ("cpu", "cuda"))
    assert on_cuda.shape == on_cpu.shape and np.isfinite(on_cuda).all()
    # Both are quantized to levels of 2 * 20 / 255 = 0.16 px and JPEG-compressed: a flow value
    # near a level's edge may land on the next one, and JPEG spreads that over its 8 x 8 block.
    error = np.abs(on_cuda - on_cpu)
    beyond_two_levels = np.mean(error > 2.5 * STEP_PX)
    assert error.mean() < RAFT_MEAN_PX and beyond_two_levels < 1e-3, (error.mean(), error.max(), beyond_two_levels)


def extract_with_raft(video_root: Path, video: str, out: Path, weights: Path, device: str) -> np.ndarray:
    """``python -m flow extract --device DEVICE`` of one video with RAFT: its flow, dequantized."""
    listed = out.parent / f"{out.name}.txt"
    listed.write_text(video + "\n")
    code = flow_main(["extract", str(video_root), str(out), "--list", str(listed), "--algorithm", "raft",
                      "--param", f"weights={weights}", "--device", device,
                      "--short-side", "0", "--no-progress"])
    assert code == 0
    store = FolderFlowStore(out)
    video_id = video.rsplit(".", 1)[0]
    meta = store.meta(video_id)
    assert meta is not None and torch.device(meta.params["device"]).type == device
    return dequantize(store.read_flow(video_id, list(range(meta.num_flows))), meta.bound)
