#!/usr/bin/env python3
"""Reference shapes for edgeml's plan-time shape inference, from `onnx.shape_inference`.

For every model below, the declared `value_info` is removed and
`onnx.shape_inference.infer_shapes` (the anchor: the ONNX project's own implementation
of the operator shape functions) infers the type and shape of each intermediate value.
One text file per model is written to `tests/fixtures/shapes/<name>.txt`, a line per
value:

    <value name>\t<onnx elem type code>\t<dims, comma-separated; a symbolic dim by its
    name prefixed with '$', an unknown one as '?'; '-' for a scalar>

Values whose shape onnx leaves unknown are not listed. `edgeml-onnx/tests/plan_shapes.rs`
plans each model (also without `value_info`) and compares `Plan::value_type`.

    python3 scripts/make_shape_fixtures.py
"""

import glob
import os
import shutil

import onnx
from onnx import shape_inference

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "shapes")


def models():
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/models/light_*.onnx"))):
        yield os.path.basename(p)[:-5], p
    for n in ("cnn", "mlp"):
        yield f"digits_{n}", os.path.join(ROOT, f"tests/fixtures/digits/{n}.onnx")
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/onnx-backend/*/*/model.onnx"))):
        parts = p.split(os.sep)
        yield f"{parts[-3]}__{parts[-2]}", p


def dim_text(d):
    if d.HasField("dim_value"):
        return str(d.dim_value)
    if d.HasField("dim_param"):
        return "$" + d.dim_param
    return "?"


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    count = 0
    for name, path in models():
        m = onnx.load(path)
        del m.graph.value_info[:]
        try:
            inferred = shape_inference.infer_shapes(m, strict_mode=False)
        except Exception as e:  # noqa: BLE001 - a model onnx cannot infer is skipped
            print(f"skip {name}: {str(e).splitlines()[0][:100]}")
            continue
        lines = []
        for v in inferred.graph.value_info:
            t = v.type.tensor_type
            if not t.HasField("shape"):
                continue
            dims = ",".join(dim_text(d) for d in t.shape.dim) or "-"
            lines.append(f"{v.name}\t{t.elem_type}\t{dims}")
        if not lines:
            continue
        with open(os.path.join(OUT, f"{name}.txt"), "w") as fh:
            fh.write(f"# onnx {onnx.__version__} shape_inference of {os.path.relpath(path, ROOT)}\n")
            fh.write("\n".join(lines) + "\n")
        count += 1
    print(f"wrote {count} files to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
