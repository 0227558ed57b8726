#!/usr/bin/env python3
"""Full-integer post-training quantization of the bundled digits models by TFLite's
converter, beside `edgeml quantize` on the same calibration images.

The two ONNX models (`tests/fixtures/digits/{cnn,mlp}.onnx`) are rebuilt as Keras models
with the same weights (NHWC layout; the CNN's Gemm columns reordered from ONNX's
channel-major flatten to Keras's channel-last one), checked against onnxruntime on the
float model (outputs within 1e-5), then converted with `tf.lite.Optimize.DEFAULT`, a
representative dataset of the first 100 test images (one per step, as the converter
draws them), and `TFLITE_BUILTINS_INT8` (int8 weights and activations, float input and
output). Accuracy on all 450 test images (TFLite's interpreter), output SQNR of the int8
probabilities against the float ones of the same runtime, and file sizes over the float
`.tflite` are printed beside `edgeml quantize --per-channel` (MinMax, QDQ, run by
onnxruntime) on the same images, with its size over the float `.onnx`.

Usage (TensorFlow is not in scripts/requirements.txt; use a separate environment):
    python3 -m venv tfenv && tfenv/bin/pip install tensorflow-cpu onnx onnxruntime
    tfenv/bin/python scripts/bench_tflite_digits.py target/release/edgeml
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "tests", "fixtures", "digits")


def weights(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}


def keras_cnn(w):
    """Conv 3x3 (8, same) -> Relu -> MaxPool 2 -> Flatten -> Dense 10 -> Softmax."""
    inp = tf.keras.Input((8, 8, 1), batch_size=1)
    conv = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")
    h = conv(inp)
    h = tf.keras.layers.MaxPool2D(2)(h)
    h = tf.keras.layers.Flatten()(h)
    dense = tf.keras.layers.Dense(10)
    out = tf.keras.layers.Softmax()(dense(h))
    model = tf.keras.Model(inp, out)
    conv.set_weights([w["wc"].transpose(2, 3, 1, 0), w["bc"]])
    # ONNX flattens [C, H, W]; Keras flattens [H, W, C]: row (h, w, c) of the kernel is
    # column c*16 + h*4 + w of the ONNX Gemm weight.
    c, hh, ww = np.meshgrid(np.arange(8), np.arange(4), np.arange(4), indexing="ij")
    onnx_index = (c * 16 + hh * 4 + ww).transpose(1, 2, 0).reshape(-1)
    dense.set_weights([w["wf"][:, onnx_index].T, w["bf"]])
    return model, lambda x: x.transpose(0, 2, 3, 1)


def keras_mlp(w):
    """Dense 32 (Relu) -> Dense 10 -> Softmax on the 64 flattened pixels."""
    inp = tf.keras.Input((64,), batch_size=1)
    d1 = tf.keras.layers.Dense(32, activation="relu")
    d2 = tf.keras.layers.Dense(10)
    out = tf.keras.layers.Softmax()(d2(d1(inp)))
    model = tf.keras.Model(inp, out)
    d1.set_weights([w["w1"], w["b1"]])
    d2.set_weights([w["w2"], w["b2"]])
    return model, lambda x: x.reshape(len(x), 64)


def tflite_run(blob, x):
    it = tf.lite.Interpreter(model_content=blob)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for row in x:
        it.set_tensor(i["index"], row[None].astype(np.float32))
        it.invoke()
        out.append(it.get_tensor(o["index"])[0].astype(np.float32))
    return np.stack(out)


def sqnr(ref, q):
    """Output SQNR in dB of `q` against the float outputs `ref`."""
    return float(10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((ref - q).astype(np.float64) ** 2).sum()))


def main():
    edgeml = sys.argv[1]
    x = np.load(os.path.join(DIGITS, "x_test.npy"))
    y = np.load(os.path.join(DIGITS, "y_test.npy"))
    acc = lambda p: float((p.argmax(1) == y).mean())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        calib = os.path.join(tmp, "calib.npy")
        np.save(calib, x[:100])
        for name, build in [("cnn", keras_cnn), ("mlp", keras_mlp)]:
            src = os.path.join(DIGITS, f"{name}.onnx")
            sess = lambda p: ort.InferenceSession(p, providers=["CPUExecutionProvider"])
            p_float = sess(src).run(None, {"x": x})[0]
            model, layout = build(weights(src))
            xk = layout(x).astype(np.float32)
            p_keras = np.concatenate([model(xk[i:i + 1], training=False).numpy() for i in range(len(xk))])
            diff = float(np.abs(p_keras - p_float).max())
            if diff > 1e-5:
                raise SystemExit(f"{name}: the Keras rebuild differs from onnxruntime by {diff:.3g}")
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            float_blob = conv.convert()
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([xk[i:i + 1]] for i in range(100))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            int8_blob = conv.convert()
            p_tfl_float = tflite_run(float_blob, xk)
            p_tfl_int8 = tflite_run(int8_blob, xk)
            ours = os.path.join(tmp, f"{name}_int8.onnx")
            subprocess.run([edgeml, "quantize", src, "-o", ours, "--calibration", calib, "--per-channel"],
                           check=True, stdout=subprocess.DEVNULL)
            p_ours = sess(ours).run(None, {"x": x})[0]
            rows.append((name, acc(p_float), acc(p_tfl_float), acc(p_tfl_int8), sqnr(p_tfl_float, p_tfl_int8),
                         len(int8_blob) / len(float_blob), acc(p_ours), sqnr(p_float, p_ours),
                         os.path.getsize(ours) / os.path.getsize(src)))
    print(f"tensorflow {tf.__version__}, onnxruntime {ort.__version__}")
    print("| model | float (onnxruntime) | float (TFLite) | TFLite int8 | TFLite SQNR (dB) | TFLite size "
          "| edgeml int8 | edgeml SQNR (dB) | edgeml size |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.1f} | {r[5]:.1%} | {r[6]:.4f} | {r[7]:.1f} "
              f"| {r[8]:.1%} |")


if __name__ == "__main__":
    main()
