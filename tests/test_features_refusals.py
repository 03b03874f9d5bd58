"""features refuses flow the model was not trained on (brief: no silent wrong number)."""

from dataclasses import replace

import pytest

from datamodules.settings import FrameSampling
from flow.packed import open_flow_store
from flow.videos import list_videos, video_id
from inference.features import ExtractedFlow, refuse_other_flow_stacks
from inference.recipe import FlowSettings, Recipe


def test_bidirectional_and_trajectory_flow_models_are_refused():
    model = {"class_path": "x.Y", "init_args": {}}
    refuse_other_flow_stacks(Recipe(model))  # forward stacks at fixed positions: what features build
    with pytest.raises(ValueError, match="bidirectional_flow"):
        refuse_other_flow_stacks(Recipe(model, sampling=FrameSampling(bidirectional_flow=True)))
    with pytest.raises(ValueError, match="stacking: trajectory"):
        refuse_other_flow_stacks(Recipe(model, sampling=FrameSampling(stacking="trajectory")))


def test_frames_root_of_other_flow_settings_is_refused(ucf101_tiny):
    dataset, frames_root = ucf101_tiny
    vid = video_id(list_videos(dataset.video_root)[0])
    meta = open_flow_store(frames_root).meta(vid)
    trained = FlowSettings(meta.algorithm, bound=meta.bound, jpeg_quality=meta.jpeg_quality, step=meta.step)
    assert ExtractedFlow(frames_root, trained)(None, vid) is not None
    assert ExtractedFlow(frames_root, FlowSettings(None, reason="another tool's"))(None, vid) is not None
    with pytest.raises(ValueError, match=r"bound .*, model 99\.0"):
        ExtractedFlow(frames_root, replace(trained, bound=99.0))(None, vid)
    with pytest.raises(ValueError, match="algorithm .*, model 'raft'"):
        ExtractedFlow(frames_root, replace(trained, algorithm="raft"))(None, vid)
    with pytest.raises(ValueError, match=r"params\.preset 'medium', model 'fast'"):
        ExtractedFlow(frames_root, replace(trained, params={**meta.params, "preset": "fast"}))(None, vid)
