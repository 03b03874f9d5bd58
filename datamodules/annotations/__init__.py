"""Annotation readers: one per format, each returning ``Annotations`` (classes + records)."""

from datamodules.annotations.hmdb51 import read_hmdb51
from datamodules.annotations.kinetics import kinetics_splits, read_kinetics
from datamodules.annotations.list_file import read_list_file
from datamodules.annotations.records import AnnotationError, Annotations, VideoRecord
from datamodules.annotations.ucf101 import read_class_index, read_ucf101

__all__ = [
    "AnnotationError",
    "Annotations",
    "VideoRecord",
    "kinetics_splits",
    "read_class_index",
    "read_hmdb51",
    "read_kinetics",
    "read_list_file",
    "read_ucf101",
]
