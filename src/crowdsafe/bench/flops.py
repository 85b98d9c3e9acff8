"""Analytic work of one CSRNet pass, so frames/s can be read as a fraction of the machine's peak."""

from __future__ import annotations

from crowdsafe.counting.weights import BACKEND, FRONTEND


def conv_macs(height: int, width: int) -> int:
    """Exact multiply-accumulates of every convolution for one HxW image.

    Convs are 'same'-padded, so each output pixel costs cin*cout*k*k; the three 2x2 pools
    floor the spatial size exactly as the ONNX graph does.
    """
    h, w, cin, macs = height, width, 3, 0
    for item in FRONTEND:
        if item == "M":
            h, w = h // 2, w // 2
            continue
        macs += h * w * cin * int(item) * 9
        cin = int(item)
    for cout in BACKEND:
        macs += h * w * cin * cout * 9
        cin = cout
    return macs + h * w * cin * 1  # 1x1 output layer


def conv_flops(height: int, width: int) -> int:
    """FLOPs counted the usual way: one multiply-accumulate = 2 operations."""
    return 2 * conv_macs(height, width)
