"""The Keras 3 layer table (docs/layers.md#node-kinds, docs/extending.md#layer-tables): which layer classes and
activation functions are which node kind, as data. ``signxai/torch_signxai/layer_table.py`` is its PyTorch twin, in
the same shape; ``capture.py`` reads both the table and the special cases named below."""
from __future__ import annotations

import math

import keras
from keras import layers as L

from signxai.core import graph as g
from signxai.core.layers import KindEntry, LayerTable

_ACT = keras.activations


def _optional(module, *names):
    """Classes of keras.applications that this Keras version may lack."""
    try:
        found = __import__(module, fromlist=list(names))
    except ImportError:
        return ()
    return tuple(getattr(found, name) for name in names if hasattr(found, name))


# The separable convolutions: two kernel nodes each, depthwise then pointwise (docs/layers.md#separable-convolutions)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
# Inception-ResNet's ``inputs[0] + inputs[1] * scale``: an ADD node with coefficients (docs/layers.md#scaled-sums).
SCALED_SUMS = _optional("keras.src.applications.inception_resnet_v2", "CustomScaleLayer")

LAYER_TABLE = LayerTable({
    g.KERNEL: KindEntry(layers=(L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
                                L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose, *SEPARABLE)),
    g.BATCHNORM: KindEntry(layers=(L.BatchNormalization,)),
    g.AVGPOOL: KindEntry(layers=(L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
                                 L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)),
    g.ADD: KindEntry(layers=(L.Add, *SCALED_SUMS)),
    g.PRODUCT: KindEntry(layers=(L.Multiply,)),  # of two tensors
    g.RELU: KindEntry(layers=(L.ReLU, L.LeakyReLU, L.PReLU), functions=(_ACT.relu, _ACT.relu6, _ACT.leaky_relu)),
    # ``Activation(fn)`` takes the kind of ``fn``; an activation function not listed here (and not linear or a
    # softmax) is an ACTIVATION too
    g.ACTIVATION: KindEntry(layers=(L.ELU, L.Activation),
                            functions=(_ACT.elu, _ACT.selu, _ACT.celu, _ACT.gelu, _ACT.silu, _ACT.mish, _ACT.tanh,
                                       _ACT.sigmoid, _ACT.hard_sigmoid, _ACT.hard_silu, _ACT.softplus,
                                       _ACT.softsign, _ACT.exponential)),
    g.PASS: KindEntry(layers=(L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
                              L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
                              L.Identity, L.InputLayer, L.LayerNormalization, L.GroupNormalization, L.Rescaling,
                              L.Normalization, *((L.RMSNormalization,) if hasattr(L, "RMSNormalization") else ()),
                              # ConvNeXt's per-channel scaling and stochastic depth (the identity at inference)
                              *_optional("keras.src.applications.convnext", "LayerScale", "StochasticDepth"))),
    g.REINDEX: KindEntry(layers=(L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D,
                                 L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.Flatten, L.Reshape, L.Permute,
                                 L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
                                 L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Concatenate)),
})

# Keras operation layers created by arithmetic on KerasTensors (``x + 3.0``, ``x * y``, ``keras.ops.multiply``), by
# class name (module ``keras.src.ops``) -> the neutral operation of signxai.core.layers.arithmetic_kind.
ARITHMETIC = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "divide",
              "TrueDivide": "divide"}

# Keras operations recorded on symbolic tensors (``keras.ops.tanh(x)`` inside a custom layer's ``call``, by class name
# in ``keras.src.ops``) -> node kind: the ops of custom layers signxai descends into (docs/layers.md#keras-descend).
OPERATIONS = {"Relu": g.RELU, "Relu6": g.RELU, "LeakyRelu": g.RELU,
              "Sigmoid": g.ACTIVATION, "Tanh": g.ACTIVATION, "Gelu": g.ACTIVATION, "Silu": g.ACTIVATION,
              "HardSigmoid": g.ACTIVATION, "HardSilu": g.ACTIVATION, "Elu": g.ACTIVATION, "Selu": g.ACTIVATION,
              "Softplus": g.ACTIVATION, "Mish": g.ACTIVATION,
              "Reshape": g.REINDEX, "Transpose": g.REINDEX, "ExpandDims": g.REINDEX, "Squeeze": g.REINDEX,
              "GetItem": g.REINDEX, "Concatenate": g.REINDEX, "MaxPool": g.REINDEX, "Cast": g.PASS,
              "Pad": g.REINDEX,  # (with constant_values 0; capture.py refuses other constants)
              "AveragePool": g.AVGPOOL}
OPERATION_RANGES = {"Relu": (0.0, math.inf), "Relu6": (0.0, 6.0), "Sigmoid": (0.0, 1.0), "HardSigmoid": (0.0, 1.0),
                    "Tanh": (-1.0, 1.0)}
SOFTMAX_OPERATIONS = ("Softmax", "LogSoftmax")

# Refused by every method: explanations need logits (docs/api.md#model-requirements).
SOFTMAX_LAYERS = (L.Softmax,)
SOFTMAX_FUNCTIONS = (_ACT.softmax, _ACT.log_softmax)

# Output bounds of bounded activations (for gate detection at products, docs/layers.md#gated-products); ReLU's
# (0, inf) lets rules skip work on inputs known to be nonnegative (docs/lrp.md#kernel-rules). A ``ReLU`` layer
# without slope or threshold has (0, max_value).
VALUE_RANGES = {_ACT.sigmoid: (0.0, 1.0), _ACT.hard_sigmoid: (0.0, 1.0), _ACT.relu6: (0.0, 6.0),
                _ACT.tanh: (-1.0, 1.0), _ACT.relu: (0.0, math.inf)}
