"""LightningModules: one stream, two streams, multi-task; evaluation helpers. No architecture code."""

from lightning_modules.classifier import (
    StreamsModule,
    VideoClassifier,
    load_network_weights,
)
from lightning_modules.metrics import classification_metrics, score_metrics
from lightning_modules.multi_task import MultiTaskClassifier
from lightning_modules.optim import PaperSGD, classifier_name, parameter_groups
from lightning_modules.step_timing import StepTiming
from lightning_modules.two_stream import TwoStreamClassifier
from lightning_modules.video_scores import (
    VideoScoreCollector,
    load_video_scores,
    save_video_scores,
)
from lightning_modules.views import forward_views, video_scores

__all__ = [
    "MultiTaskClassifier",
    "PaperSGD",
    "StepTiming",
    "StreamsModule",
    "TwoStreamClassifier",
    "VideoClassifier",
    "VideoScoreCollector",
    "classification_metrics",
    "classifier_name",
    "forward_views",
    "load_network_weights",
    "load_video_scores",
    "parameter_groups",
    "save_video_scores",
    "score_metrics",
    "video_scores",
]
