"""Video data: annotations, index, decoding, sampling, transforms, datasets, DataModules."""

from datamodules.datamodule import VideoDataModule
from datamodules.datasets import DataFailureError, VideoDataset
from datamodules.legacy import (
    HMDB51DataModule,
    KineticsDataModule,
    ListDataModule,
    UCF101DataModule,
)
from datamodules.multi import MultiDataModule
from datamodules.synthetic import generate

__all__ = [
    "DataFailureError",
    "HMDB51DataModule",
    "KineticsDataModule",
    "ListDataModule",
    "MultiDataModule",
    "UCF101DataModule",
    "VideoDataModule",
    "VideoDataset",
    "generate",
]
