"""inference/features.py: features equal the network's pooled forward_features on clips built by
hand here; shapes of ten crops and concat; the run's resume and bad videos."""

import copy
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from datamodules.decoding import create_reader
from datamodules.transforms import Augmentation
from flow.extraction_config import ExtractionConfig
from flow.ownership import LOCK_SUFFIX, TMP_MARK, Writer, lock_path, temporary
from flow.packed import open_flow_store
from flow.videos import list_videos, video_id
from inference.feature_extractor import FeatureExtractor, FeatureSettings
from inference.feature_run import ARRAYS, extract_features_many, output_path
from inference import features
from inference.features import ExtractedFlow, ExtractorSource, FlowOnTheFly
from inference.load import load_config
from inference.snippets import SnippetGrid, resampled
from models.i3d_port import export_port_state_dict
from models.inception_i3d import InceptionI3D
from models.stream2d import ResNetStream

SIZE = 32  # crop side of the tiny networks; the synthetic videos are 64 x 48
AT_STORED_SIZE = Augmentation(short_side=None)  # no resize: the hand-built clips are plain crops


@pytest.fixture(scope="module")
def networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"i3d_rgb": InceptionI3D(4, frames=8, input_size=SIZE).eval(),
            "i3d_flow": InceptionI3D(4, modality="flow", frames=8, input_size=SIZE).eval(),
            "resnet_rgb": ResNetStream(4, depth=18, input_size=SIZE).eval()}


@pytest.fixture(scope="module")
def data(ucf101_tiny) -> tuple[Path, list[str], Path]:
    dataset, frames_root = ucf101_tiny
    return dataset.video_root, list_videos(dataset.video_root), frames_root


def pooled(network: torch.nn.Module, clip: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return network.forward_head(network.forward_features(clip), pre_logits=True).numpy()


def centre(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, C) -> the centre SIZE x SIZE crop."""
    top, left = round((frames.shape[-3] - SIZE) / 2), round((frames.shape[-2] - SIZE) / 2)
    return frames[..., top:top + SIZE, left:left + SIZE, :]


def extractor(networks: dict, frames_root: Path | None = None, **settings) -> FeatureExtractor:
    return FeatureExtractor(networks, FeatureSettings(**settings), AT_STORED_SIZE, create_reader("auto"),
                            ExtractedFlow(frames_root) if frames_root else None)


def test_snippet_grid_timestamps_padding_and_resampling():
    grid = SnippetGrid(length=20, stack=8, step=4, fps=10.0)
    assert grid.starts.tolist() == [0, 4, 8, 12]
    assert grid.timestamps()[1].tolist() == [0.4, 1.2]
    short = SnippetGrid(length=5, stack=8, step=8, fps=10.0)
    assert short.padded and short.timestamps().tolist() == [[0.0, 0.5]]
    assert resampled(10, 30.0, 15.0).tolist() == [0, 2, 4, 6, 8]
    assert resampled(4, 10.0, 20.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_i3d_features_equal_forward_features_on_hand_built_clips(networks, data):
    """RGB (stack 8, step 4) and flow (fields read and dequantized here) of one video."""
    video_root, videos, frames_root = data
    rgb_net, flow_net = networks["i3d_rgb"], networks["i3d_flow"]
    path = video_root / videos[0]
    out = extractor({"rgb": rgb_net, "flow": flow_net}, frames_root, stack=8, step=2).extract(path, video_id(videos[0]))

    store = open_flow_store(frames_root)
    meta = store.meta(video_id(videos[0]))
    fields = meta.num_flows  # the snippets of a two-stream run fit in the fields
    frames = centre(create_reader("auto").read_frames(path, list(range(fields))))
    folder = frames_root / video_id(videos[0])
    x = [cv2.imread(str(folder / f"flow_x_{k + 1:05d}.jpg"), cv2.IMREAD_GRAYSCALE) for k in range(fields)]
    y = [cv2.imread(str(folder / f"flow_y_{k + 1:05d}.jpg"), cv2.IMREAD_GRAYSCALE) for k in range(fields)]
    levels = centre(np.stack([np.stack(x), np.stack(y)], axis=-1)).astype(np.float32)  # (fields, h, w, 2)
    step = np.float32(2 * meta.bound / 255)
    flow = np.clip(levels * step - np.float32(meta.bound), -20, 20) / 20  # I3D: clipped to 20 px, in [-1, 1]
    starts = list(range(0, fields - 8 + 1, 2))
    assert out.timestamps.shape == (len(starts), 2) and len(starts) >= 2
    for t, s in enumerate(starts):
        rgb_clip = torch.from_numpy((frames[s:s + 8] / np.float32(255) - 0.5) / 0.5).permute(3, 0, 1, 2)[None].float()
        flow_clip = torch.from_numpy(flow[s:s + 8]).permute(3, 0, 1, 2)[None].float()
        np.testing.assert_allclose(out.features["rgb"][t], pooled(rgb_net, rgb_clip)[0], atol=1e-5)
        np.testing.assert_allclose(out.features["flow"][t], pooled(flow_net, flow_clip)[0], atol=1e-5)
    assert out.features["rgb"].shape == (len(starts), 1024) and out.features["rgb"].dtype == np.float32


def test_resnet_features_read_each_snippets_middle_frame(networks, data):
    video_root, videos, _ = data
    network = networks["resnet_rgb"]
    path = video_root / videos[1]
    out = extractor({"rgb": network}, stack=4, step=4, crops="centre").extract(path, video_id(videos[1]))
    frames = create_reader("auto").read_frames(path, list(range(12)))
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    images = (centre(frames[[2, 6, 10]]) / np.float32(255) - mean) / std
    expected = pooled(network, torch.from_numpy(images).permute(0, 3, 1, 2).float())
    np.testing.assert_allclose(out.features["rgb"], expected, atol=1e-5)
    assert out.features["rgb"].shape == (3, 512)



def test_fps_resamples_before_stacking(networks, data):
    """At half the videos' 25 fps, 2-frame stacks read the source frames 4-frame stacks read at 25."""
    video_root, videos, _ = data
    path, vid = video_root / videos[1], video_id(videos[1])
    network = {"rgb": networks["resnet_rgb"]}
    halved = extractor(network, stack=2, fps=12.5).extract(path, vid)
    native = extractor(network, stack=4).extract(path, vid)
    np.testing.assert_array_equal(halved.features["rgb"], native.features["rgb"])  # source frames 2, 6, 10
    np.testing.assert_allclose(halved.timestamps, [[0.0, 0.16], [0.16, 0.32], [0.32, 0.48]])
    np.testing.assert_allclose(native.timestamps, halved.timestamps)

def test_ten_crops_concat_and_a_short_video(networks, data):
    video_root, videos, frames_root = data
    path, vid = video_root / videos[2], video_id(videos[2])
    ten = extractor({"rgb": networks["resnet_rgb"]}, stack=6, crops="ten").extract(path, vid)
    assert ten.features["rgb"].shape == (2, 10, 512)
    with pytest.raises(ValueError, match="never mirrors"):  # Something-Something's data turns flips off
        FeatureExtractor({"rgb": networks["resnet_rgb"]}, FeatureSettings(stack=6, crops="ten"),
                         replace(AT_STORED_SIZE, flip=False), create_reader("auto"))
    both = extractor({"rgb": networks["i3d_rgb"], "flow": networks["i3d_flow"]}, frames_root, stack=8,
                     concat=True).extract(path, vid)
    assert list(both.features) == ["concat"] and both.features["concat"].shape == (1, 2048)
    short = extractor({"rgb": networks["i3d_rgb"]}, stack=32).extract(path, vid)  # 12 frames < one stack
    assert short.features["rgb"].shape == (1, 1024) and "looped" in short.notes[0]
    np.testing.assert_allclose(short.timestamps, [[0.0, short.duration]])



def two_videos_and(data: tuple[Path, list[str], Path], tmp_path: Path, name: str, content: bytes) -> Path:
    """A video root of the data's first two videos and a file ``name`` holding ``content``."""
    video_root, videos, _ = data
    root = tmp_path / "videos"
    for listed in videos[:2]:
        (root / listed).parent.mkdir(parents=True, exist_ok=True)
        (root / listed).symlink_to(video_root / listed)
    (root / name).write_bytes(content)
    return root

def test_run_resumes_and_lists_a_corrupt_video(networks, data, tmp_path):
    _, videos, _ = data
    root = two_videos_and(data, tmp_path, "broken.avi", b"not a video at all")
    listed = list_videos(root)
    build = lambda: extractor({"rgb": networks["resnet_rgb"]}, stack=6)  # noqa: E731
    out = tmp_path / "features"
    summary = extract_features_many(root, listed, out, build, failures_file=tmp_path / "failed.txt", progress=False)
    assert (summary.done, summary.failed) == (2, 1)
    assert (tmp_path / "failed.txt").read_text().startswith("broken.avi\t")
    stamps = output_path(out, video_id(videos[0]), "timestamps")
    assert np.load(output_path(out, video_id(videos[0]), "rgb")).shape == (2, 512) and stamps.is_file()
    assert not list(out.rglob("*.tmp-*"))
    again = extract_features_many(root, listed, out, build, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 2, 1)


def i3d_config(tmp_path: Path, weights: Path | None) -> Path:
    """A config of an RGB I3D built with ``weights`` (an I3D port file of random weights, in the real format)."""
    config = tmp_path / "i3d.yaml"
    config.write_text(f"""model:
  class_path: lightning_modules.VideoClassifier
  init_args:
    num_classes: 4
    network:
      class_path: models.InceptionI3D
      init_args: {{modality: rgb, frames: 8, input_size: {SIZE}, weights: {weights or 'null'}}}
data:
  class_path: datamodules.VideoDataModule
  init_args:
    augment: {{short_side: 48}}
""")
    return config


def test_cli_from_a_config_with_port_weights_exit_codes_and_resume(data, tmp_path, capsys):
    _, videos, _ = data
    root = two_videos_and(data, tmp_path, "broken.mp4", b"")
    weights = tmp_path / "rgb_port.pt"
    torch.save(export_port_state_dict(InceptionI3D(4, frames=8, input_size=SIZE)), weights)
    args = [str(root), str(tmp_path / "out"), "--config", str(i3d_config(tmp_path, weights)), "--stack-size", "4",
            "--device", "cpu", "--no-progress"]
    assert features.main(args) == 1
    assert "broken.mp4" in (tmp_path / "out" / "failures_shard0of1.txt").read_text()
    assert np.load(output_path(tmp_path / "out", video_id(videos[0]), "rgb")).shape == (3, 1024)
    (root / "broken.mp4").unlink()
    capsys.readouterr()
    assert features.main(args) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out


def test_cli_refuses_random_features_in_one_line(data, tmp_path, capsys):
    video_root, _, _ = data
    args = [str(video_root), str(tmp_path / "out"), "--config", str(i3d_config(tmp_path, None)), "--device", "cpu"]
    assert features.main(args) == 2
    err = capsys.readouterr().err
    assert "model.init_args.network has no weights" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_flow_on_the_fly_equals_the_extracted_flows_features(networks, data):
    """Computed in memory with the settings the root was extracted with (tests/conftest.py: DIS at
    the videos' size): the same JPEG bytes, so the same features."""
    video_root, videos, frames_root = data
    path, vid = video_root / videos[3], video_id(videos[3])
    flow_net = {"flow": networks["i3d_flow"]}
    settings = FeatureSettings(stack=4)
    on_the_fly = FeatureExtractor(flow_net, settings, AT_STORED_SIZE, create_reader("auto"),
                                  FlowOnTheFly(ExtractionConfig(algorithm="dis", short_side=0)))
    extracted = extractor(flow_net, frames_root, stack=4)
    np.testing.assert_array_equal(on_the_fly.extract(path, vid).features["flow"],
                                  extracted.extract(path, vid).features["flow"])


@pytest.mark.gpu
def test_features_on_cuda_equal_the_cpus(networks, data):
    video_root, videos, frames_root = data
    path, vid = video_root / videos[4], video_id(videos[4])
    nets = {"rgb": networks["i3d_rgb"], "flow": networks["i3d_flow"]}
    cpu = extractor(nets, frames_root, stack=8, crops="ten").extract(path, vid)
    on_cuda = FeatureExtractor({key: copy.deepcopy(net) for key, net in nets.items()},
                               FeatureSettings(stack=8, crops="ten"), AT_STORED_SIZE, create_reader("auto"),
                               ExtractedFlow(frames_root), device="cuda").extract(path, vid)
    for key in nets:
        # cuDNN may convolve in TF32 (its default): agreement, not bits
        np.testing.assert_allclose(on_cuda.features[key], cpu.features[key], atol=1e-2, rtol=1e-2)


def test_imagenet_inflated_weights_give_features_a_classifier_could_not(data, tmp_path):
    """A config whose I3D inflates GoogLeNet weights (a local file of random weights in torchvision's
    format): features read the pre-logits, so the untrained classifier is no reason to refuse."""
    video_root, videos, _ = data
    weights = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).state_dict(), weights)
    source = ExtractorSource(None, i3d_config(tmp_path, weights), None, None, FeatureSettings(stack=8), "cpu")
    out = source.build().extract(video_root / videos[0], video_id(videos[0]))
    assert out.features["rgb"].shape == (1, 1024)
    with pytest.raises(ValueError, match="classifier nobody trained"):
        load_config(i3d_config(tmp_path, weights))  # classify's rule stands


def test_a_rerun_removes_a_killed_writers_temporaries_and_keeps_a_live_writers(networks, data, tmp_path):
    """v0: a writer killed between its renames (rgb in place, no timestamps) and before others
    (temporaries of every file); v1: a live writer's lock and temporaries, left alone."""
    video_root, videos, _ = data
    out = tmp_path / "features"
    killed = subprocess.Popen(["true"])
    killed.wait()  # its pid is gone: the writer is dead
    dead = Writer(socket.gethostname(), killed.pid, 0)
    v0, v1 = video_id(videos[0]), video_id(videos[1])
    for vid in (v0, v1):
        output_path(out, vid, "timestamps").parent.mkdir(parents=True, exist_ok=True)
    lock_path(output_path(out, v0, "timestamps")).write_text(dead.text())
    left = [temporary(output_path(out, v0, name), dead.tag()) for name in (*ARRAYS, "timestamps")]
    for path in left:
        path.write_bytes(b"half")
    np.save(output_path(out, v0, "rgb"), np.zeros((7, 3), np.float32))  # renamed, but its timestamps never were
    holder = subprocess.Popen(["sleep", "60"])
    try:
        live = Writer(socket.gethostname(), holder.pid, 0)
        lock_path(output_path(out, v1, "timestamps")).write_text(live.text())
        in_use = temporary(output_path(out, v1, "rgb"), live.tag())
        in_use.write_bytes(b"being written")
        build = lambda: extractor({"rgb": networks["resnet_rgb"]}, stack=6)  # noqa: E731
        summary = extract_features_many(video_root, videos[:2], out, build, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert (summary.done, summary.failed, [skip.video for skip in summary.in_use]) == (1, 0, [videos[1]])
    assert not any(path.exists() for path in left) and not lock_path(output_path(out, v0, "timestamps")).exists()
    assert np.load(output_path(out, v0, "rgb")).shape == (2, 512)  # redone, not trusted
    assert np.load(output_path(out, v0, "timestamps")).shape == (2, 2)
    assert in_use.read_bytes() == b"being written" and not output_path(out, v1, "timestamps").exists()


@pytest.mark.slow
def test_cli_killed_with_sigkill_mid_run_then_rerun_leaves_complete_outputs_and_no_temporaries(data, tmp_path):
    video_root, videos, _ = data
    weights = tmp_path / "rgb_port.pt"
    torch.save(export_port_state_dict(InceptionI3D(4, frames=8, input_size=SIZE)), weights)
    out, listed = tmp_path / "out", tmp_path / "three.txt"
    listed.write_text("".join(f"{video}\n" for video in videos[:3]))
    args = [str(video_root), str(out), "--list", str(listed), "--config", str(i3d_config(tmp_path, weights)),
            "--stack-size", "4", "--device", "cpu", "--no-progress"]
    run = subprocess.Popen([sys.executable, "cli.py", "features", *args], cwd=Path(__file__).resolve().parents[1],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and any(out.rglob(f"*{LOCK_SUFFIX}"))):  # a video being written
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.wait()
    assert any(out.rglob(f"*{LOCK_SUFFIX}"))  # the killed writer's lock, left behind
    assert features.main(args) == 0  # the rerun in this process: one Lightning import less
    for video in videos[:3]:
        stamps = np.load(output_path(out, video_id(video), "timestamps"))
        assert np.load(output_path(out, video_id(video), "rgb")).shape == (len(stamps), 1024)
    assert not [path for path in out.rglob("*") if TMP_MARK in path.name or path.name.endswith(LOCK_SUFFIX)]
