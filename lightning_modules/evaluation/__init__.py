"""Evaluation: the test protocol's views through a network, per-video scores, their files, fusion.

The test path, top to bottom (the 25 x 10 protocol of the two-stream paper, the clips x
crops of I3D's):

1. ``datamodules.transforms.Augment`` (test stage) gives each video its P sampled
   positions uncropped, short-side resized, and the K crop boxes (``views``).
2. ``datamodules.batch.finish_batch`` (the datamodule's ``on_after_batch_transfer``) wraps a
   test batch's keys, on the device, in ``TestViews`` (``datamodules/test_views.py``): the
   P x K views of each video, cut by ``transforms.apply_view`` and converted by
   ``datamodules.inputs.to_input`` a chunk at a time when asked. They are made on the data
   side because the datamodule makes them (data moves one way: flow -> datamodules ->
   lightning_modules); everything after the data is here.
3. ``views.forward_views`` (here) puts them through a network ``chunk_size`` views at a
   time; ``views.video_scores`` averages the softmax over each video's views.
4. ``video_test.VideoTest`` collects a module's per-video scores per group, gathers them
   once across ranks (``scores.VideoScoreCollector``), logs the test metrics on the
   gathered arrays and writes the ``.npz`` score files (``scores``).
5. ``fusion_table`` fuses two streams' scores (average, SVM) into the two-stream paper's
   table, in a test (``TwoStreamClassifier``) and from the files
   (``python -m lightning_modules.evaluation``).

A module's evaluation settings (views per forward, the score file) are ``settings.Evaluation``,
its ``evaluation:`` block.
"""

from lightning_modules.evaluation.scores import VideoScoreCollector, load_video_scores, save_video_scores
from lightning_modules.evaluation.settings import Evaluation
from lightning_modules.evaluation.video_test import VideoTest
from lightning_modules.evaluation.views import forward_views, video_scores

__all__ = [
    "Evaluation",
    "VideoScoreCollector",
    "VideoTest",
    "forward_views",
    "load_video_scores",
    "save_video_scores",
    "video_scores",
]
