"""Networks: 2D streams, inflation to 3D, I3D, the I3D paper's baselines, fusion.

Plain nn.Modules, no Lightning.
"""

from models.adapt import Backbone, Layout, adapt_first_conv
from models.c3d import C3D
from models.cnn_m import CNNM2048
from models.convnet_lstm import ConvNetLSTM
from models.fusion import SVMFusion, average_fusion
from models.i3d_port import export_port_state_dict, load_port_weights
from models.inception_i3d import InceptionI3D, inflate_googlenet
from models.inflate import inflate, inflate_batchnorm, inflate_conv, inflate_pool
from models.input_spec import InputSpec
from models.non_local import NonLocalBlock
from models.resnet_i3d import ResNetI3D
from models.stream2d import GoogLeNetStream, ResNetStream

__all__ = [
    "C3D",
    "CNNM2048",
    "Backbone",
    "ConvNetLSTM",
    "GoogLeNetStream",
    "InceptionI3D",
    "InputSpec",
    "Layout",
    "NonLocalBlock",
    "ResNetI3D",
    "ResNetStream",
    "SVMFusion",
    "adapt_first_conv",
    "average_fusion",
    "export_port_state_dict",
    "inflate",
    "inflate_batchnorm",
    "inflate_conv",
    "inflate_googlenet",
    "inflate_pool",
    "load_port_weights",
]
