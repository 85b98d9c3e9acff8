"""Speed and accuracy benchmark of the counting engines on this machine.

Numbers are only meaningful next to the machine they were taken on, so every report carries
the CPU, its measured fp32 matmul peak, and the count drift of the reduced precisions
against fp32 on real crowd images: a fast int8 that miscounts is not a result.
"""
