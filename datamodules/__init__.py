"""Video data: annotations, index, decoding, sampling, transforms, datasets, DataModules."""

from datamodules.datamodule import VideoDataModule
from datamodules.datasets import DataFailureError, VideoDataset
from datamodules.multi import MultiDataModule
from datamodules.settings import EvalProtocol, FrameSampling, LoaderSettings, Roots
from datamodules.synthetic import generate
from datamodules.transforms import Augmentation

__all__ = [
    "Augmentation",
    "DataFailureError",
    "EvalProtocol",
    "FrameSampling",
    "LoaderSettings",
    "MultiDataModule",
    "Roots",
    "VideoDataModule",
    "VideoDataset",
    "generate",
]
