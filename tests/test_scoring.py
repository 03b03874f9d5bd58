"""inference/scoring.py: a raw video scored as `cli.py test` scores it on extracted flow.

The issue's exactness test: for the videos of a test split, ``VideoScorer.score`` on the
raw video (flow computed in memory from the checkpoint's recipe) equals the row of the
test's score file (flow extracted to folders by ``python -m flow extract``'s code) within
1e-4 per class, with the same top-1, for a spatial, a temporal, a two-stream and an I3D
checkpoint. The checkpoints are real: written by ``cli.py fit`` (one training batch of tiny
networks on the tiny synthetic UCF-101), then tested by ``cli.py test``.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cli import cli_main
from datamodules.annotations import UCF101
from datamodules.settings import EvalProtocol
from flow.videos import video_id
from inference.load import load_checkpoint
from inference.recipe import FlowSettings
from inference.scoring import VIDEO_ERRORS, FlowUnavailable, VideoScorer, window_spans
from lightning_modules.evaluation import load_video_scores

RESNET = {"class_path": "models.ResNetStream", "init_args": {"depth": 18, "input_size": 32}}
SPATIAL = {**RESNET, "init_args": {**RESNET["init_args"], "modality": "rgb"}}
TEMPORAL = {**RESNET, "init_args": {**RESNET["init_args"], "modality": "flow", "in_channels": 10}}
I3D_FLOW = {"class_path": "models.InceptionI3D", "init_args": {"modality": "flow", "frames": 16, "input_size": 32}}
ONE_STREAM = "lightning_modules.VideoClassifier"
MODELS = {
    "spatial": {"class_path": ONE_STREAM, "init_args": {"network": SPATIAL}},
    "temporal": {"class_path": ONE_STREAM, "init_args": {"network": TEMPORAL}},
    "two_stream": {"class_path": "lightning_modules.TwoStreamClassifier",
                   "init_args": {"spatial": SPATIAL, "temporal": TEMPORAL, "fusion_weights": [1.0, 1.5]}},
    # 16 frames of 12-frame videos (11 fields): test loops the clip, and so must classify.
    "i3d": {"class_path": ONE_STREAM, "init_args": {"network": I3D_FLOW}},
}
CROPS = {"i3d": {"crops": "centre"}}  # 3D clips are the slow views here
STREAMS = {"spatial": ["rgb"], "temporal": ["flow"], "two_stream": ["spatial", "temporal"], "i3d": ["flow"]}


def experiment(name: str, data, frames: Path, folder: Path) -> Path:
    """Fit ``name`` for one batch and test it with ``cli.py``; returns its experiment folder."""
    config = {
        "seed_everything": 0,
        # One training step makes the networks trained (cli.py tests no untrained one).
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 1,
                    "limit_val_batches": 0, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(folder)},
        # A small step keeps I3D's scores spread over the classes; the ResNets' sit near one-hot
        # after one step (eval-mode batch norm with one batch's statistics): their inputs are compared too.
        "model": {**MODELS[name], "init_args": {**MODELS[name]["init_args"], "optimizer": {
            "class_path": "torch.optim.SGD", "init_args": {"lr": 1e-4}}}},
        "data": {"class_path": "datamodules.VideoDataModule", "init_args": {
            "annotations": {"class_path": "datamodules.annotations.UCF101",
                            "init_args": UCF101.synthetic.source_settings(data.annotation_dir)},
            "roots": {"video_root": str(data.video_root), "frames_root": str(frames),
                      "cache_dir": str(folder / "cache")},
            "augment": {"short_side": 40},  # resized from 48: the flow's stretch is tracked too
            "test": {"positions": 2, "clips": 2, "svm_positions": 1, **CROPS.get(name, {})},
            "loader": {"batch_size": 2, "test_batch_size": 4, "num_workers": 0, "pin_memory": False}}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    cli_main(["fit", "--config", str(path)])
    cli_main(["test", "--config", str(path), "--ckpt_path", "last"])
    return folder / "runs" / name


@pytest.fixture(scope="module")
def tested(ucf101_tiny, tmp_path_factory) -> dict[str, Path]:
    """Each model's experiment folder (last.ckpt, test_scores.npz), all on one dataset."""
    data, frames = ucf101_tiny
    folder = tmp_path_factory.mktemp("scoring")
    return {name: experiment(name, data, frames, folder) for name in MODELS}


def videos_of(ucf101_tiny, scores: dict) -> list[tuple[int, Path]]:
    data, _ = ucf101_tiny
    paths = {video_id(str(path.relative_to(data.video_root))): path for path in data.videos}
    return [(row, paths[name]) for row, name in enumerate(scores["video_ids"])]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_a_raw_video_scores_as_test_scored_its_extracted_flow(name, tested, ucf101_tiny) -> None:
    saved = load_video_scores(tested[name] / "test_scores.npz")
    scorer = VideoScorer(load_checkpoint(tested[name] / "checkpoints" / "last.ckpt"), "cpu")
    videos = videos_of(ucf101_tiny, saved)
    assert len(videos) == 8  # all tested; three scored here, one of each of three classes
    config = tested[name].parents[1] / f"{name}.yaml"
    test_set = cli_main(["--config", str(config)], run=False).datamodule.make_dataset("test")
    for row, path in videos[::3]:
        # What the networks see: the test's uint8 sample of this video, bit for bit (with one-step
        # networks the scores may sit near one-hot; the inputs pin the comparison regardless).
        ours, theirs = scorer.dataset(scorer.prepare(path))[0], test_set[int(saved["index"][row])]
        compared = [key for key in ("rgb", "flow", "views", "flow_quantization", "flow_scale") if key in theirs]
        assert compared and set(compared) <= set(ours)
        for key in compared:
            assert torch.equal(ours[key], theirs[key]), f"{path} {key}"
        scored = scorer.score(path)
        for stream in STREAMS[name]:
            expected = saved[f"scores_{stream}"][row]
            np.testing.assert_allclose(scored.scores[stream], expected, atol=1e-4, rtol=0, err_msg=f"{path} {stream}")
            assert scored.scores[stream].argmax() == expected.argmax()
        if name == "two_stream":
            fused = (saved["scores_spatial"][row] + 1.5 * saved["scores_temporal"][row]) / 2.5
            np.testing.assert_allclose(scored.scores["fusion"], fused, atol=1e-4, rtol=0)
        clipped = name == "i3d"
        assert scored.protocol == ({"clips": 2, "stride": 1, "crops": "centre", "views": 2} if clipped else
                                   {"positions": 2, "crops": "ten", "views": 20})
        assert any("shorter than one clip" in note for note in scored.notes) == clipped
        assert scored.flow_engine == (None if name == "spatial" else "dis")


@pytest.mark.slow
def test_fewer_views_and_windows(tested, ucf101_tiny) -> None:
    """A centre view says so; windows reuse the video's flow, each scored as a video of its frames."""
    loaded = load_checkpoint(tested["two_stream"] / "checkpoints" / "last.ckpt")
    (_, path), *_ = videos_of(ucf101_tiny, load_video_scores(tested["two_stream"] / "test_scores.npz"))
    scorer = VideoScorer(loaded, "cpu", EvalProtocol(positions=3, crops="centre"))  # 3 views: quick
    scored = scorer.score(path)
    assert scored.protocol == {"positions": 3, "crops": "centre", "views": 3}
    windows = scorer.score_windows(path, window_s=0.24, stride_s=0.16)  # 12 frames at 25 fps
    assert [(round(start, 2), round(end, 2)) for start, end, _ in windows] == [(0, 0.24), (0.16, 0.4), (0.32, 0.48)]
    for _, _, scores in windows:
        assert set(scores.scores) == {"spatial", "temporal", "fusion"}
        assert scores.scores["fusion"].sum() == pytest.approx(1, abs=1e-5)
    assert any("shorter than one flow stack" in note for note in windows[2][2].notes)  # 3 fields, L = 5
    video = scorer.prepare(path)
    span = scorer.dataset(video, first=4, count=6)  # frames 4..9 read as frames 0..5 of a video
    assert np.array_equal(span.reader.read_frames(path, [0, 5]), scorer.reader.read_frames(path, [4, 9]))
    assert np.array_equal(span.store.read_fields(span.index.video_ids[0], [0, 4]).planes,
                          video.store.read_fields("video", [4, 8]).planes)
    [(start, end, whole)] = scorer.score_windows(path, window_s=1.0, stride_s=1.0)  # longer than the video
    assert (start, end) == (0, 0.48)
    for stream, scores in scored.scores.items():
        np.testing.assert_array_equal(whole.scores[stream], scores)


def test_window_spans_cover_the_video_and_hold_a_field() -> None:
    assert window_spans(12, 25, 0.24, 0.16, minimum=2) == [(0, 6), (4, 6), (8, 4)]
    assert window_spans(12, 25, 1.0, 0.5, minimum=2) == [(0, 12)]  # shorter than a window: one
    assert window_spans(9, 1, 4, 4, minimum=2) == [(0, 4), (4, 4), (7, 2)]  # a 1-frame tail starts earlier


@pytest.mark.slow
def test_flow_that_cannot_be_computed_as_trained_is_refused(tested) -> None:
    loaded = load_checkpoint(tested["temporal"] / "checkpoints" / "last.ckpt")
    cases = [
        (FlowSettings(None, reason="the training flow has no meta.json"), "no meta.json"),
        (FlowSettings("no_such_flow", bound=20.0, jpeg_quality=95), "unknown flow algorithm 'no_such_flow'"),
        (FlowSettings("raft", bound=20.0, jpeg_quality=95), "weights=PATH"),
    ]
    for flow, reason in cases:
        loaded.recipe = replace(loaded.recipe, flow=flow)
        with pytest.raises(FlowUnavailable, match=reason):
            VideoScorer(loaded, "cpu")
    with pytest.raises(FlowUnavailable, match="trained on dis flow"):
        VideoScorer(load_checkpoint(tested["temporal"] / "checkpoints" / "last.ckpt"), "cpu", engine="tvl1")


def as_tvl1(loaded):
    """``loaded`` as if trained on TV-L1 flow (few iterations: the engines, not the flow, are tested)."""
    quick = {"nscales": 2, "warps": 1, "outer_iterations": 2, "inner_iterations": 3, "median_filtering": 1}
    loaded.recipe = replace(loaded.recipe, flow=replace(loaded.recipe.flow, algorithm="tvl1", params=quick))
    return loaded


@pytest.mark.slow
def test_tvl1_runs_as_tvl1_torch_when_asked_and_says_so(tested, ucf101_tiny) -> None:
    checkpoint = tested["temporal"] / "checkpoints" / "last.ckpt"
    (_, path), *_ = videos_of(ucf101_tiny, load_video_scores(tested["temporal"] / "test_scores.npz"))
    opencv = VideoScorer(as_tvl1(load_checkpoint(checkpoint)), "cpu").score(path)
    torch_engine = VideoScorer(as_tvl1(load_checkpoint(checkpoint)), "cpu", engine="tvl1_torch").score(path)
    assert (opencv.flow_engine, torch_engine.flow_engine) == ("tvl1", "tvl1_torch on cpu")
    assert any("tvl1_torch" in note for note in torch_engine.notes) and not opencv.notes
    np.testing.assert_allclose(torch_engine.scores["flow"], opencv.scores["flow"], atol=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spatial", "temporal"])
def test_a_video_that_cannot_be_read_names_the_reason(name, tested, tmp_path) -> None:
    scorer = VideoScorer(load_checkpoint(tested[name] / "checkpoints" / "last.ckpt"), "cpu")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(VIDEO_ERRORS) as error:
        scorer.score(broken)
    assert str(broken) in str(error.value)


@pytest.mark.gpu
def test_scores_on_cuda_match_the_cpu(tested, ucf101_tiny) -> None:
    checkpoint = tested["two_stream"] / "checkpoints" / "last.ckpt"
    (_, path), *_ = videos_of(ucf101_tiny, load_video_scores(tested["two_stream"] / "test_scores.npz"))
    on_cpu = VideoScorer(load_checkpoint(checkpoint), "cpu").score(path)
    on_cuda = VideoScorer(load_checkpoint(checkpoint, "cuda"), "cuda").score(path)
    for stream, scores in on_cpu.scores.items():
        np.testing.assert_allclose(on_cuda.scores[stream], scores, atol=1e-3, rtol=0)
    # TV-L1 on a GPU: OpenCV's solver in PyTorch, the video's pairs batched.
    temporal = tested["temporal"] / "checkpoints" / "last.ckpt"
    opencv = VideoScorer(as_tvl1(load_checkpoint(temporal)), "cpu").score(path)
    batched = VideoScorer(as_tvl1(load_checkpoint(temporal, "cuda")), "cuda").score(path)
    assert batched.flow_engine == "tvl1_torch on cuda, 32 pairs a call"
    np.testing.assert_allclose(batched.scores["flow"], opencv.scores["flow"], atol=0.02)
