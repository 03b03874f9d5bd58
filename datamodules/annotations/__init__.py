"""Annotation readers, one file per dataset: each holds its format's reader and its
``AnnotationSource`` (classes, splits, records), which ``VideoDataModule`` and ``check`` take."""

from datamodules.annotations.hmdb51 import HMDB51, read_hmdb51
from datamodules.annotations.kinetics import Kinetics, kinetics_splits, read_kinetics
from datamodules.annotations.list_file import ListFiles, read_list_file
from datamodules.annotations.records import AnnotationError, Annotations, VideoRecord
from datamodules.annotations.source import AnnotationSource
from datamodules.annotations.ssv2 import SSv2, read_ssv2, read_ssv2_labels
from datamodules.annotations.ucf101 import UCF101, read_class_index, read_ucf101

__all__ = [
    "HMDB51",
    "UCF101",
    "AnnotationError",
    "AnnotationSource",
    "Annotations",
    "Kinetics",
    "ListFiles",
    "SSv2",
    "VideoRecord",
    "kinetics_splits",
    "read_class_index",
    "read_hmdb51",
    "read_kinetics",
    "read_list_file",
    "read_ssv2",
    "read_ssv2_labels",
    "read_ucf101",
]
