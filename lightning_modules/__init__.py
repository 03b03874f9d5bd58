"""LightningModules: one stream, two streams, multi-task; evaluation helpers. No architecture code."""

from lightning_modules.classifier import StreamsModule, VideoClassifier
from lightning_modules.evaluation import (
    Evaluation,
    VideoScoreCollector,
    forward_views,
    load_video_scores,
    save_video_scores,
    video_scores,
)
from lightning_modules.metrics import classification_metrics, score_metrics
from lightning_modules.multi_task import MultiTaskClassifier
from lightning_modules.optim import PaperSGD, classifier_name, parameter_groups
from lightning_modules.provenance import load_network_weights
from lightning_modules.step_timing import StepTiming
from lightning_modules.two_stream import TwoStreamClassifier

__all__ = [
    "Evaluation",
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
