#!/usr/bin/env python3
"""Exports small models with the usual converters — TensorFlow/Keras via tf2onnx and
PaddlePaddle via paddle2onnx — and stores each in the ONNX backend-test layout
(model.onnx + test_data_set_0/{input,output}_N.pb, outputs from onnxruntime) under
tests/fixtures/onnx-backend/converters/<name>/.

The models use random (seeded) weights: what is tested is that the exporters' graphs
load, round-trip and run, not what they compute. TensorFlow and Paddle are heavy, so
this script is run by hand in a separate environment, not in CI:

    python3 -m venv /tmp/convenv
    /tmp/convenv/bin/pip install tensorflow-cpu tf2onnx paddlepaddle paddle2onnx onnx onnxruntime
    /tmp/convenv/bin/python scripts/make_converter_models.py [tf|paddle]
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DST = os.path.join(ROOT, "tests", "fixtures", "onnx-backend", "converters")


def store(name, model_path, feeds):
    d = os.path.join(DST, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    m = onnx.load(model_path)
    onnx.save(m, os.path.join(d, "model.onnx"))
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    init = {i.name for i in m.graph.initializer}
    names = [i.name for i in m.graph.input if i.name not in init]
    for k, n in enumerate(names):
        t = numpy_helper.from_array(feeds[n], n)
        open(os.path.join(d, "test_data_set_0", f"input_{k}.pb"), "wb").write(t.SerializeToString())
    for k, (o, v) in enumerate(zip(sess.get_outputs(), outs)):
        t = numpy_helper.from_array(np.asarray(v), o.name)
        open(os.path.join(d, "test_data_set_0", f"output_{k}.pb"), "wb").write(t.SerializeToString())
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"{name}: producer {m.producer_name} {m.producer_version}, opset "
          f"{[o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')]}, ops {ops}")


def tensorflow_models(tmp):
    import tensorflow as tf
    import tf2onnx

    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    # A small image classifier: Conv/BN/ReLU/pooling/depthwise/dense/softmax.
    cnn = tf.keras.Sequential([
        tf.keras.Input((16, 16, 3), batch_size=1, name="image"),
        tf.keras.layers.Conv2D(8, 3, padding="same"),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.ReLU(),
        tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Conv2D(16, 1, activation="swish"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
        tf.keras.layers.Softmax(),
    ])
    # A recurrent sensor model: LSTM over 12 steps of 4 channels, then a dense head.
    rnn = tf.keras.Sequential([
        tf.keras.Input((12, 4), batch_size=1, name="series"),
        tf.keras.layers.LSTM(8, return_sequences=True),
        tf.keras.layers.GRU(6),
        tf.keras.layers.Dense(3, activation="tanh"),
    ])
    for name, model, opset in (("tf_cnn", cnn, 13), ("tf_rnn", rnn, 15)):
        spec = [tf.TensorSpec(model.inputs[0].shape, tf.float32, name="x")]
        fn = tf.function(lambda x, m=model: m(x, training=False), input_signature=spec)
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
        p = os.path.join(tmp, f"{name}.onnx")
        onnx.save(proto, p)
        inp = proto.graph.input[0]
        shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        store(name, p, {inp.name: rng.standard_normal(shape).astype(np.float32)})


def paddle_models(tmp):
    import paddle

    paddle.seed(0)
    rng = np.random.default_rng(1)

    class OcrLike(paddle.nn.Layer):
        """Conv backbone + bidirectional LSTM over the width axis, as in CRNN-style OCR."""

        def __init__(self):
            super().__init__()
            self.conv1 = paddle.nn.Conv2D(1, 8, 3, padding=1)
            self.bn1 = paddle.nn.BatchNorm2D(8)
            self.conv2 = paddle.nn.Conv2D(8, 16, 3, padding=1)
            self.pool = paddle.nn.MaxPool2D(2)
            self.lstm = paddle.nn.LSTM(16 * 4, 16, direction="bidirect")
            self.fc = paddle.nn.Linear(32, 11)

        def forward(self, x):
            x = self.pool(paddle.nn.functional.relu(self.bn1(self.conv1(x))))
            x = self.pool(paddle.nn.functional.hardswish(self.conv2(x)))
            n, c, h, w = x.shape
            x = paddle.transpose(x, [0, 3, 1, 2]).reshape([n, w, c * h])
            x, _ = self.lstm(x)
            return paddle.nn.functional.softmax(self.fc(x), axis=-1)

    class Mlp(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.l1 = paddle.nn.Linear(20, 32)
            self.ln = paddle.nn.LayerNorm(32)
            self.l2 = paddle.nn.Linear(32, 5)

        def forward(self, x):
            return self.l2(paddle.nn.functional.gelu(self.ln(self.l1(x))))

    for name, layer, shape in (("paddle_ocr", OcrLike(), [1, 1, 16, 32]), ("paddle_mlp", Mlp(), [2, 20])):
        layer.eval()
        prefix = os.path.join(tmp, name)
        spec = [paddle.static.InputSpec(shape, "float32", "x")]
        paddle.onnx.export(layer, prefix, input_spec=spec, opset_version=13)
        store(name, prefix + ".onnx", {"x": rng.standard_normal(shape).astype(np.float32)})


def main():
    # TensorFlow and Paddle crash when loaded into one process: pass `tf` or `paddle` to
    # run one exporter (the default runs each in its own subprocess).
    which = sys.argv[1:] or None
    if which is None:
        for w in ("tf", "paddle"):
            subprocess.run([sys.executable, __file__, w], check=False)
        return
    makers = {"tf": tensorflow_models, "paddle": paddle_models}
    with tempfile.TemporaryDirectory() as tmp:
        for make in (makers[w] for w in which):
            try:
                make(tmp)
            except Exception as e:  # report and go on: one converter failing is not fatal
                print(f"{make.__name__} failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
