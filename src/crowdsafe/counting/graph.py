"""CSRNet as an ONNX graph, built directly from the verified weights.

Building the graph ourselves (rather than exporting from PyTorch) keeps torch out of the
install and lets the same builder emit the int8 variant: QuantizeLinear/DequantizeLinear
pairs around the layers we choose, with activation scales calibrated offline on crowd
images and shipped as a small JSON file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crowdsafe.counting.weights import ConvSpec, conv_specs

if TYPE_CHECKING:  # onnx takes about a second to import; only a model build (cache miss) needs it
    import onnx

INPUT_NAME = "image"
OUTPUT_NAME = "density"
OPSET = 17
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Output cells are this many input pixels on a side (three 2x2 pools).
STRIDE = 8


@dataclass(frozen=True)
class Int8Plan:
    """Which convolutions run in int8 and the scale of each one's (non-negative) input.

    Activations are uint8 with zero point 0 (every quantised conv follows a ReLU or a
    max-pool of ReLU outputs), weights int8 symmetric per output channel: the u8 x s8
    layout that oneDNN and MLAS both run natively on x86.
    """

    activation_scales: dict[str, float]
    keep_float: frozenset[str] = field(default_factory=frozenset)

    def quantised(self, name: str) -> bool:
        return name in self.activation_scales and name not in self.keep_float


def conv_names() -> list[str]:
    return [layer.name for layer in conv_specs() if isinstance(layer, ConvSpec)]


def build_model(weights: dict[str, np.ndarray], int8: Int8Plan | None = None,
                stop_after: str | None = None) -> onnx.ModelProto:
    """The whole network, input ``image`` (N,3,H,W float32 RGB 0..255), output ``density``.

    Batch, height and width are dynamic; the output is (N,1,floor(H/8),floor(W/8)) and sums
    to the estimated number of people. ``stop_after`` names a conv whose ReLU output becomes
    the graph output instead (N,C,...): training caches these frozen-layer features once, with
    the very engine and pre-processing inference uses, so train and run time see the same input.
    """
    if stop_after is not None and stop_after not in conv_names():
        raise ValueError(f"stop_after={stop_after!r} is not a conv of the network")
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = _convs(conv_specs(), weights, _normalised(nodes, inits), nodes, inits, int8, stop_after)
    nodes.append(_identity(x, OUTPUT_NAME))
    return _finish(nodes, inits, {OUTPUT_NAME: 1 if stop_after is None else "channels"})


def build_branched(trunk: dict[str, np.ndarray], split_after: str,
                   branches: dict[str, tuple[dict[str, np.ndarray], str | None]],
                   int8: dict[str, Int8Plan] | None = None) -> onnx.ModelProto:
    """One graph for several models that share their layers up to ``split_after``.

    ``branches``: output name -> (that model's weights, ``stop_after`` as in ``build_model``);
    each branch runs the layers after ``split_after`` with its own weights. The shared layers
    run once per frame, so counting a frame with two models that differ only in their last
    layers costs little more than one (``crowdsafe tune --finetune``: the dense and sparse
    models and the dense features the refit reads, from one pass). ``int8``: the plan of the
    trunk (key ``""``) and of each branch (by output name), for those to run in int8.
    """
    names = conv_names()
    if split_after not in names:
        raise ValueError(f"split_after={split_after!r} is not a conv of the network")
    specs = conv_specs()
    cut = next(i for i, layer in enumerate(specs)
               if isinstance(layer, ConvSpec) and layer.name == split_after)
    plans = int8 or {}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = _convs(specs[:cut + 1], trunk, _normalised(nodes, inits), nodes, inits, plans.get(""), None)
    channels: dict[str, int | str] = {}
    for out, (weights, stop_after) in branches.items():
        if stop_after is not None and names.index(stop_after) <= names.index(split_after):
            raise ValueError(f"branch {out}: stop_after={stop_after!r} is not after {split_after!r}")
        y = _convs(specs[cut + 1:], weights, x, nodes, inits, plans.get(out), stop_after, prefix=f"{out}/")
        nodes.append(_identity(y, out))
        channels[out] = 1 if stop_after is None else "channels"
    return _finish(nodes, inits, channels)


def _normalised(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> str:
    from onnx import helper, numpy_helper

    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * 255.0)
    inits += [numpy_helper.from_array(mean, "pixel_mean"),
              numpy_helper.from_array(inv_std.astype(np.float32), "pixel_inv_std")]
    nodes += [helper.make_node("Sub", [INPUT_NAME, "pixel_mean"], ["centred"]),
              helper.make_node("Mul", ["centred", "pixel_inv_std"], ["normalised"])]
    return "normalised"


def _convs(specs: list[ConvSpec | str], weights: dict[str, np.ndarray], x: str,
           nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], int8: Int8Plan | None,
           stop_after: str | None, prefix: str = "") -> str:
    """Append ``specs`` (convs with their ReLU, pools) after tensor ``x``; the last tensor's name.
    ``prefix`` keeps a branch's tensor and weight names apart from another's."""
    from onnx import helper, numpy_helper

    for i, layer in enumerate(specs):
        if isinstance(layer, str):
            out = f"{prefix}pool{i}"
            nodes.append(helper.make_node("MaxPool", [x], [out], kernel_shape=[2, 2],
                                          strides=[2, 2]))
            x = out
            continue
        w = weights[f"{layer.name}.weight"]
        b = weights[f"{layer.name}.bias"]
        name = f"{prefix}{layer.name}"
        w_name, b_name = f"{name}.weight", f"{name}.bias"
        inits.append(numpy_helper.from_array(b.astype(np.float32), b_name))
        conv_in = x
        if int8 is not None and int8.quantised(layer.name):
            conv_in, w_name = _qdq(name, x, w, int8.activation_scales[layer.name], nodes, inits)
        else:
            inits.append(numpy_helper.from_array(w.astype(np.float32), w_name))
        pad = layer.dilation * (layer.kernel // 2)
        conv_out = f"{name}.conv"
        nodes.append(helper.make_node(
            "Conv", [conv_in, w_name, b_name], [conv_out], name=name,
            kernel_shape=[layer.kernel, layer.kernel], pads=[pad] * 4,
            dilations=[layer.dilation] * 2, strides=[1, 1]))
        if layer.name == "output_layer":
            x = conv_out
        else:
            x = f"{name}.relu"
            nodes.append(helper.make_node("Relu", [conv_out], [x]))
        if layer.name == stop_after:
            break
    return x


def _identity(x: str, out: str) -> onnx.NodeProto:
    from onnx import helper

    return helper.make_node("Identity", [x], [out])


def _finish(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
            outputs: dict[str, int | str]) -> onnx.ModelProto:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "csrnet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                       ["batch", channels, "out_height", "out_width"])
         for name, channels in outputs.items()],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="crowdsafe")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _qdq(name: str, x: str, w: np.ndarray, act_scale: float,
         nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> tuple[str, str]:
    """Insert Q/DQ for one conv's input and weight; return the dequantised names."""
    from onnx import helper, numpy_helper

    inits += [numpy_helper.from_array(np.array(act_scale, np.float32), f"{name}.x_scale"),
              numpy_helper.from_array(np.array(0, np.uint8), f"{name}.x_zero")]
    q, dq = f"{name}.x_q", f"{name}.x_dq"
    nodes += [helper.make_node("QuantizeLinear", [x, f"{name}.x_scale", f"{name}.x_zero"], [q]),
              helper.make_node("DequantizeLinear", [q, f"{name}.x_scale", f"{name}.x_zero"], [dq])]
    w_scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0
    w_scale = np.where(w_scale > 0, w_scale, 1.0).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits += [numpy_helper.from_array(w_q, f"{name}.w_q"),
              numpy_helper.from_array(w_scale, f"{name}.w_scale"),
              numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{name}.w_zero")]
    w_dq = f"{name}.w_dq"
    nodes.append(helper.make_node("DequantizeLinear",
                                  [f"{name}.w_q", f"{name}.w_scale", f"{name}.w_zero"], [w_dq],
                                  axis=0))
    return dq, w_dq
