#!/usr/bin/env python3
"""Reference values for edgeml_quant::math from onnxruntime's own functions
(onnxruntime.quantization.quant_utils: compute_scale_zp, get_qmin_qmax_for_qType,
quantize_data), written to tests/fixtures/quant_math/:

    scale_zp.txt     one case a line: rmin rmax qtype symmetric reduce_range scale zero_point
    per_channel.txt  one case a line, fields separated by '|':
                     shape | axis | qtype symmetric | data | scales | zero_points | quantized

Floats are written with repr() of the float32 value promoted to float64, so they
round-trip exactly. Usage: python3 scripts/make_quant_math_fixtures.py (numpy, onnx,
onnxruntime).
"""
import os

import numpy as np
from onnx import TensorProto
from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType, quantize_data

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "quant_math")
TYPES = {"u8": TensorProto.UINT8, "i8": TensorProto.INT8, "u16": TensorProto.UINT16, "i16": TensorProto.INT16}


def f(x):
    return repr(float(np.float32(x)))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(15)
    ranges = [(-1.0, 3.0), (0.0, 6.0), (-6.0, 0.0), (0.0, 0.0), (2.0, 2.0), (-2.5, -2.5), (1e-30, 1e-30),
              (-0.1234567, 0.987654321), (-1000.5, 0.25), (0.5, 4.0), (-3e38, 3e38), (-1e-3, 1e-3),
              (-127.0, 127.0), (-1.0, 1.0), (-0.5, 0.5)]
    ranges += [tuple(sorted(rng.normal(0, 3, 2).tolist())) for _ in range(20)]
    lines = []
    for lo, hi in ranges:
        for tname, qt in TYPES.items():
            for sym in (False, True):
                for rr in (False, True):
                    qmin, qmax = get_qmin_qmax_for_qType(qt, reduce_range=rr, symmetric=sym)
                    zp, scale = compute_scale_zp(np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32),
                                                 qmin, qmax, sym)
                    lines.append(f"{f(lo)} {f(hi)} {tname} {int(sym)} {int(rr)} {f(scale)} {int(zp)}")
    with open(os.path.join(OUT, "scale_zp.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")

    lines = []
    for shape, axis in [((4, 3), 0), ((4, 3), 1), ((3, 2, 2, 2), 0), ((2, 5), 1)]:
        for tname in ("i8", "u8"):
            for sym in (True, False):
                data = (rng.normal(0, 1, shape) * rng.uniform(0.01, 5)).astype(np.float32)
                if shape == (2, 5):
                    data[:, 0] = 0.0  # a constant-zero channel: scale 1.0
                moved = np.moveaxis(data, axis, 0)
                scales, zps, qs = [], [], []
                for c in range(moved.shape[0]):
                    zp, s, q = quantize_data(moved[c].ravel(), TYPES[tname], sym)
                    scales.append(f(s))
                    zps.append(str(int(zp)))
                    qs.append(q.reshape(moved[c].shape))
                q = np.moveaxis(np.stack(qs), 0, axis).astype(np.int64)
                lines.append(" | ".join([
                    " ".join(map(str, shape)), str(axis), f"{tname} {int(sym)}",
                    " ".join(f(v) for v in data.ravel()), " ".join(scales), " ".join(zps),
                    " ".join(str(v) for v in q.ravel())]))
    with open(os.path.join(OUT, "per_channel.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
