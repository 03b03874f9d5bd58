"""Optical flow: algorithms, denseflow's JPEG codec, the on-disk layout and its reader.

Importing this package stays light (no torch); RAFT imports torch when built.
"""

from flow.algorithms import ALGORITHMS, FlowAlgorithm, create_algorithm, register
from flow.codec import (
    DEFAULT_BOUND,
    DEFAULT_JPEG_QUALITY,
    decode_flow,
    decode_jpeg,
    dequantize,
    encode_flow,
    encode_jpeg,
    quantize,
)
from flow.colorwheel import flow_to_color
from flow.layout import DENSEFLOW, MMACTION2, OURS, FrameLayout
from flow.meta import META_FILE, FlowMeta, read_meta, write_meta
from flow.paths import safe_join
from flow.store import FolderFlowStore

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BOUND",
    "DEFAULT_JPEG_QUALITY",
    "DENSEFLOW",
    "META_FILE",
    "MMACTION2",
    "OURS",
    "FlowAlgorithm",
    "FlowMeta",
    "FolderFlowStore",
    "FrameLayout",
    "create_algorithm",
    "decode_flow",
    "decode_jpeg",
    "dequantize",
    "encode_flow",
    "encode_jpeg",
    "flow_to_color",
    "quantize",
    "read_meta",
    "register",
    "safe_join",
    "write_meta",
]
