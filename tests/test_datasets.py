"""VideoDataset on a tiny generated UCF-101 (64x48, 12 frames, 4 classes x 4 videos) with DIS flow
(forward and backward) and RGB frames."""

import inspect
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import datamodules.datasets as datasets_module
import datamodules.transforms as transforms_module
from datamodules import DataFailureError, EvalProtocol, VideoDataModule, generate
from datamodules.annotations import UCF101
from datamodules.batch import collate_test
from datamodules.datasets import FrameSizeMismatch
from flow.extract import ExtractionConfig, extract_many, extract_video
from models.input_spec import flow_pixels
from test_rotation import rotated_copy
from tests.conftest import finished, video_datamodule

MODALITIES = ["rgb", "flow", "two_stream", "rgb_clip", "flow_clip", "two_stream_clip"]
L, T, CROP = 4, 4, 32
EXTRACTION = ExtractionConfig(algorithm="dis", short_side=0, rgb=True, backward=True)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    data = generate(root / "data", "ucf101", num_classes=4, videos_per_class=4, num_frames=12, size=(64, 48))
    videos = [str(path.relative_to(data.video_root)) for path in data.videos]
    assert extract_many(data.video_root, videos, root / "frames", EXTRACTION, progress=False).failed == 0
    return data, root


def datamodule(ucf, **settings) -> VideoDataModule:
    data, root = ucf
    options = dict(num_fields=L, frames=T, crop_size=CROP, short_side=None, test_positions=3, test_clips=2,
                   batch_size=2, num_workers=0, pin_memory=False, cache_dir=str(root / "cache"))
    frames_root = settings.pop("frames_root", root / "frames")
    return video_datamodule(UCF101(str(data.annotation_dir)), video_root=str(data.video_root),
                            frames_root=str(frames_root), **{**options, **settings})


def shape(value):
    return tuple(value.shape)


@pytest.mark.parametrize("modality", MODALITIES)
def test_shapes_per_modality_and_stage(ucf, modality):
    dm = datamodule(ucf, modality=modality)
    rgb = {"train": (3, CROP, CROP), "test": (30, 3, CROP, CROP)}  # 3 positions x ten crops
    flow = {"train": (2 * L, CROP, CROP), "test": (30, 2 * L, CROP, CROP)}
    if modality.endswith("clip"):  # 2 clips x three crops
        rgb = {"train": (3, T, CROP, CROP), "test": (6, 3, T, CROP, CROP)}
        flow = {"train": (2, T, CROP, CROP), "test": (6, 2, T, CROP, CROP)}
    rgb["val"], flow["val"] = rgb["train"], flow["train"]
    for split in ("train", "val", "test"):
        dataset = dm.make_dataset(split)
        keys = {"rgb", "flow"} if modality.startswith("two") else {modality.split("_")[0]}
        finishing = ({"flow_quantization", "flow_scale"} if "flow" in keys else set()) | ({"views"} if split == "test" else set())
        assert set(dataset[3]) == keys | {"label", "index"} | finishing
        assert all(dataset[3][key].dtype == torch.uint8 for key in keys)  # uint8 leaves the workers
        sample = finished(dataset, 3)
        assert dataset[3]["index"] == 3 and isinstance(dataset[3]["label"], int)
        if "rgb" in keys:
            assert shape(sample["rgb"]) == rgb[split] and sample["rgb"].dtype == torch.float32
        if "flow" in keys:
            assert shape(sample["flow"]) == flow[split]


def test_default_test_protocol_is_25_positions_by_10_crops(ucf):
    dm = datamodule(ucf, modality="two_stream", num_fields=10, crop_size=16, test_positions=25)
    sample = finished(dm.make_dataset("test"), 0)
    assert shape(sample["rgb"]) == (250, 3, 16, 16)
    assert shape(sample["flow"]) == (250, 20, 16, 16)
    assert EvalProtocol().positions == 25 and inspect.signature(flow_pixels).parameters["fields"].default == 10
    assert EvalProtocol().crops is None and dm.test_crops == "ten"  # None: ten for 2D


def test_two_stream_sample_shares_position_crop_and_flip(ucf, monkeypatch):
    views, reads = [], []
    apply_view = transforms_module.apply_view

    def spy_view(frames, view, flow=False):
        views.append((flow, view))
        return apply_view(frames, view, flow)

    read_rgb, read_flow = datasets_module.VideoDataset._read_rgb, datasets_module.VideoDataset._read_flow

    def spy(key, read):
        def spied(self, j, indices):
            reads.append((key, indices.copy()))
            return read(self, j, indices)
        return spied

    monkeypatch.setattr(transforms_module, "apply_view", spy_view)
    monkeypatch.setattr(datasets_module.VideoDataset, "_read_rgb", spy("rgb", read_rgb))
    monkeypatch.setattr(datasets_module.VideoDataset, "_read_flow", spy("flow", read_flow))
    dataset = datamodule(ucf, modality="two_stream").make_dataset("train")
    pl.seed_everything(0)
    for i in range(8):
        views.clear(), reads.clear()
        dataset[i]
        (rgb_flag, rgb_view), (flow_flag, flow_view) = views
        assert (rgb_flag, flow_flag) == (False, True) and rgb_view == flow_view
        (_, frames), (_, fields) = reads
        assert frames[0, 0] == fields[0, 0] + L // 2  # the frame at the stack's centre
        np.testing.assert_array_equal(fields[0], np.arange(fields[0, 0], fields[0, 0] + L))
    flips = set()
    for i in range(16):
        views.clear()
        dataset[i % len(dataset)]
        flips.add(views[0][1].flip)
    assert flips == {True, False}


def test_training_draws_repeat_under_seed_everything(ucf):
    dataset = datamodule(ucf, modality="flow").make_dataset("train")
    pl.seed_everything(3)
    first = [dataset[i]["flow"] for i in range(4)]
    pl.seed_everything(3)
    again = [dataset[i]["flow"] for i in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(dataset[0]["flow"], dataset[0]["flow"]) for _ in range(5))


def corrupt(dataset, item, tmp_path):
    bad = tmp_path / f"corrupt_{item}.avi"
    bad.write_bytes(b"not a video" * 100)
    dataset.index.paths[item] = str(bad)  # this dataset's own index copy
    return str(bad)


def test_corrupt_video_mid_epoch_is_replaced_logged_and_counted(ucf, tmp_path, caplog):
    dm = datamodule(ucf, modality="two_stream", max_failure_rate=0.5, seed=0)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    bad = corrupt(dataset, 4, tmp_path)
    with caplog.at_level(logging.WARNING, logger="datamodules.datasets"):
        batches = list(dm.train_dataloader())
    assert len(batches) == len(dataset) // 2
    seen = torch.cat([batch["index"] for batch in batches]).tolist()
    assert 4 not in seen and seen.count(5) == 2  # item 4 became item 5
    assert [source for source, _ in dataset.failures] == [bad]
    assert any(bad in record.getMessage() for record in caplog.records)


def test_failure_rate_exceeded_names_the_files(ucf, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_module, "MIN_DRAWS", 4)
    dataset = datamodule(ucf, modality="rgb", max_failure_rate=0.1).make_dataset("train")
    bad = [corrupt(dataset, item, tmp_path) for item in (1, 3)]
    with pytest.raises(DataFailureError, match="exceeds max_failure_rate") as caught:
        for i in range(len(dataset)):
            dataset[i]
    assert all(path in str(caught.value) for path in bad)


def test_bad_video_in_evaluation_raises_naming_it(ucf, tmp_path):
    dataset = datamodule(ucf, modality="rgb").make_dataset("test")
    bad = corrupt(dataset, 2, tmp_path)
    dataset[1]
    with pytest.raises(DataFailureError, match=bad):
        dataset[2]


def test_missing_flow_file_is_replaced_in_training(ucf):
    dm = datamodule(ucf, modality="flow", max_failure_rate=1.0)
    dataset = dm.make_dataset("train")
    folder = dataset.store.folder(dataset.index.video_ids[0])
    broken = dataset.store.read_fields

    def read_fields(video_id, indices, backward=False):
        if dataset.store.folder(video_id) == folder:
            raise FileNotFoundError(f"{folder}/flow_x_00001.jpg")
        return broken(video_id, indices, backward)

    dataset.store.read_fields = read_fields
    assert dataset[0]["index"] == 1
    assert dataset.failures[0][0] == str(folder)


def test_rawframes_decoder_reads_extracted_rgb(ucf):
    dm = datamodule(ucf, modality="rgb", decoder="rawframes")
    video = finished(datamodule(ucf, modality="rgb").make_dataset("val"), 0)["rgb"]
    frames = finished(dm.make_dataset("val"), 0)["rgb"]
    assert frames.shape == video.shape
    assert (frames - video).abs().mean() < 0.1  # JPEG vs. video decode of the same frame


def test_full_epoch_with_dataloader(ucf):
    dataset = datamodule(ucf, modality="rgb_clip").make_dataset("test")
    batches = list(DataLoader(dataset, batch_size=3, collate_fn=collate_test))
    assert sum(len(batch["label"]) for batch in batches) == len(dataset)
    assert shape(dataset.finish(batches[0])["rgb"].materialise()) == (3, 6, 3, T, CROP, CROP)


def spy_reads(monkeypatch, dataset):
    """Record the dataset's flow reads as (indices, backward) and its RGB frame reads."""
    flows, frames = [], []
    read_fields, read_frames = dataset.store.read_fields, dataset.reader.read_frames

    def spy_flow(video_id, indices, backward=False):
        flows.append((list(indices), backward))
        return read_fields(video_id, indices, backward)

    def spy_frames(source, indices):
        frames.append(list(indices))
        return read_frames(source, indices)

    monkeypatch.setattr(dataset.store, "read_fields", spy_flow)
    monkeypatch.setattr(dataset.reader, "read_frames", spy_frames)
    return flows, frames


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_bidirectional_stack_is_backward_then_forward_around_the_rgb_frame(ucf, monkeypatch, split):
    dataset = datamodule(ucf, modality="two_stream", bidirectional_flow=True).make_dataset(split)
    flows, frames = spy_reads(monkeypatch, dataset)
    pl.seed_everything(1)
    sample = finished(dataset, 5)
    positions = 3 if split == "test" else 1
    views = (10 * positions,) if split == "test" else ()  # ten crops per test position
    assert shape(sample["flow"]) == (*views, 2 * L, CROP, CROP) and shape(sample["rgb"]) == (*views, 3, CROP, CROP)
    (backward, is_backward), (forward, is_forward) = flows
    assert (is_backward, is_forward) == (True, False)
    for p in range(positions):
        tau = frames[0][p]
        assert backward[p * L // 2:(p + 1) * L // 2] == list(range(tau - L // 2, tau))
        assert forward[p * L // 2:(p + 1) * L // 2] == list(range(tau, tau + L // 2))


def test_bidirectional_vertical_motion_flips_sign_between_the_halves(ucf):
    data, _ = ucf
    dataset = datamodule(ucf, modality="flow", bidirectional_flow=True, flow_mean_subtraction=False).make_dataset("val")
    downward = {data.classes.index("MoveDown"): 1, data.classes.index("MoveUp"): -1}  # image y points down
    videos = [i for i, label in enumerate(dataset.index.labels) if label in downward]
    assert len(videos) == 4
    for i in videos:
        # x1..xL, then y1..yL, backward fields first: backward fields point up for a downward motion.
        y = finished(dataset, i)["flow"][L:].mean(dim=(1, 2)) * downward[dataset.index.labels[i]]
        assert (y[:L // 2] < 0).all() and (y[L // 2:] > 0).all(), (dataset.index.video_ids[i], y)


def test_bidirectional_flip_negates_x_of_backward_and_forward_fields(ucf):
    dm = datamodule(ucf, modality="flow", bidirectional_flow=True, flow_mean_subtraction=False, test_positions=1)
    flow = finished(dm.make_dataset("test"), 0)["flow"]
    centre, mirrored = flow[4], flow[9]  # ten crops: 4 corners and the centre, then their flips
    torch.testing.assert_close(mirrored[:L], -centre[:L].flip(-1))
    torch.testing.assert_close(mirrored[L:], centre[L:].flip(-1))
    assert centre[:L].abs().amax() > 0  # the comparison is not between zeros


def rotate_video(dataset, item, tmp_path) -> str:
    """Item's video turned into a phone video (a 90-degree display rotation; the decoders turn
    its 64x48 frames upright to 48x64), in this dataset's own index copy."""
    rotated = rotated_copy(Path(dataset.index.paths[item]), tmp_path / f"rotated_{item}.mp4", 90)
    dataset.index.paths[item] = str(rotated)
    return str(rotated)


def test_sideways_flow_of_a_phone_video_is_a_bad_video_named_and_replaced(ucf, tmp_path, caplog):
    # The flow beside it was extracted from the stored (unturned) picture: what the pyav
    # extractor did before it applied the display rotation.
    dataset = datamodule(ucf, modality="two_stream", decoder="torchcodec", max_failure_rate=1.0).make_dataset("train")
    rotated = rotate_video(dataset, 2, tmp_path)
    video_id = dataset.index.video_ids[2]
    pl.seed_everything(0)
    with caplog.at_level(logging.WARNING, logger="datamodules.datasets"):
        sample = finished(dataset, 2)
    assert sample["index"] == 3 and shape(sample["rgb"]) == (3, CROP, CROP)
    [(source, reason)] = dataset.failures
    assert source == rotated and video_id in reason and "rgb (64, 48) and flow (48, 64)" in reason
    assert any(rotated in record.getMessage() for record in caplog.records)

    test_set = datamodule(ucf, modality="two_stream", decoder="torchcodec").make_dataset("test")
    rotated = rotate_video(test_set, 2, tmp_path)
    with pytest.raises(DataFailureError, match=f"{rotated}.*{test_set.index.video_ids[2]}.*re-extract") as caught:
        test_set[2]
    assert isinstance(caught.value.__cause__, FrameSizeMismatch)


def test_phone_video_with_upright_flow_gives_two_stream_samples(ucf, tmp_path):
    _, root = ucf
    frames_root = shutil.copytree(root / "frames", tmp_path / "frames")
    for split in ("train", "test"):
        dataset = datamodule(ucf, modality="two_stream", decoder="torchcodec", frames_root=frames_root,
                             cache_dir=str(tmp_path / "cache")).make_dataset(split)
        rotated = rotate_video(dataset, 2, tmp_path)
        extract_video(rotated, frames_root / dataset.index.video_ids[2], EXTRACTION)
        assert dataset.store.meta(dataset.index.video_ids[2]).width == 48  # upright: 48 wide, 64 high
        pl.seed_everything(0)
        sample = finished(dataset, 2)
        assert sample["index"] == 2 and not dataset.failures
        views = (30,) if split == "test" else ()
        assert shape(sample["rgb"]) == (*views, 3, CROP, CROP) and shape(sample["flow"]) == (*views, 2 * L, CROP, CROP)


def test_several_clips_per_video_come_from_one_decode(ucf, monkeypatch):
    dm = datamodule(ucf, modality="rgb_clip", clips_per_video=3, batch_size=2)
    dataset = dm.make_dataset("train")
    _, frames = spy_reads(monkeypatch, dataset)
    pl.seed_everything(0)
    item = dataset[1]
    assert len(frames) == 1 and len(frames[0]) == 3 * T  # one read of the three clips' frames
    assert [sample["index"] for sample in item] == [1, 1, 1] and all(s["rgb"].shape == (T, 3, CROP, CROP) for s in item)
    batch = dataset.finish(next(iter(dm.loader(dataset, "train"))))
    assert batch["rgb"].shape == (6, 3, T, CROP, CROP) and batch["label"].shape == (6,)
    assert dm.make_dataset("val").clips_per_video == 1  # evaluation scores each video once
    with pytest.raises(ValueError, match="clips_per_video"):
        datamodule(ucf, modality="rgb", clips_per_video=0)
