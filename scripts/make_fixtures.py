#!/usr/bin/env python3
"""Bundled digits models: train on scikit-learn's digits set (8x8 images, 10 classes,
shipped inside scikit-learn, no download) and export with onnx.helper.

Writes tests/fixtures/digits/:
    mlp.onnx        Flatten -> MatMul/Add/Relu -> MatMul/Add -> Softmax
                    (weights of an sklearn MLPClassifier, exported by hand)
    cnn.onnx        Conv(1->8, 3x3, pad 1)/Relu/MaxPool(2) -> Flatten -> Gemm -> Softmax
                    (trained here with a small numpy implementation and Adam)
    x_test.npy      float32 N x 1 x 8 x 8, pixel values / 16 (held-out split)
    y_test.npy      int64 N
    mlp_probs.npy, cnn_probs.npy   onnxruntime's outputs on x_test
    accuracy.txt    test accuracy of each model, computed from onnxruntime's outputs

Both models take input "x" of shape [N, 1, 8, 8] ("N" symbolic) and output "probs"
[N, 10]. Everything is seeded, so the files are reproducible.

Usage: python3 scripts/make_fixtures.py   (numpy, onnx, onnxruntime, scikit-learn)
"""

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "digits")
F = TensorProto.FLOAT


def data():
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def io_info():
    x = helper.make_tensor_value_info("x", F, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("probs", F, ["N", 10])
    return x, y


def save_model(nodes, inits, path, name):
    x, y = io_info()
    g = helper.make_graph(nodes, name, [x], [y], [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8,
                          producer_name="edgeml scripts/make_fixtures.py")
    onnx.checker.check_model(m)
    onnx.save(m, path)


def mlp(x_tr, y_tr, path):
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=0)
    clf.fit(x_tr.reshape(len(x_tr), -1), y_tr)
    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    nodes = [
        helper.make_node("Flatten", ["x"], ["xf"], axis=1),
        helper.make_node("MatMul", ["xf", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probs"], axis=-1),
    ]
    inits = [(n, a.astype(np.float32)) for n, a in [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)]]
    save_model(nodes, inits, path, "digits_mlp")


# --- a tiny CNN in numpy ---------------------------------------------------------------

def im2col(x):
    """x: N,1,8,8 -> N,64,9 patches of a 3x3 window with zero padding 1."""
    xp = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, i:i + 8, j:j + 8] for i in range(3) for j in range(3)], axis=-1)
    return cols.reshape(len(x), 64, 9)


def forward(p, x):
    cols = im2col(x)
    z = cols @ p["wc"].T + p["bc"]                      # N,64,8 (h*w, c)
    a = np.maximum(z, 0).reshape(-1, 8, 8, 8)           # N,h,w,c
    win = a.reshape(-1, 4, 2, 4, 2, 8)
    pooled = win.max(axis=(2, 4))                       # N,4,4,8
    f = pooled.transpose(0, 3, 1, 2).reshape(len(x), -1)  # N,128 in (c,h,w) order
    logits = f @ p["wf"].T + p["bf"]
    return cols, z, win, pooled, f, logits


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def grads(p, x, y):
    cols, z, win, pooled, f, logits = forward(p, x)
    n = len(x)
    d = softmax(logits)
    d[np.arange(n), y] -= 1.0
    d /= n
    g = {"wf": d.T @ f, "bf": d.sum(0)}
    df = (d @ p["wf"]).reshape(n, 8, 4, 4).transpose(0, 2, 3, 1)       # N,4,4,8
    mask = win == pooled[:, :, None, :, None, :]
    dwin = mask * df[:, :, None, :, None, :]
    da = dwin.reshape(n, 64, 8)
    dz = da * (z > 0)
    g["wc"] = np.einsum("npc,npk->ck", dz, cols)
    g["bc"] = dz.sum((0, 1))
    return g


def cnn(x_tr, y_tr, path, epochs=30, batch=32, lr=0.01):
    rng = np.random.default_rng(0)
    p = {
        "wc": rng.normal(0, np.sqrt(2 / 9), (8, 9)),
        "bc": np.zeros(8),
        "wf": rng.normal(0, np.sqrt(1 / 128), (10, 128)),
        "bf": np.zeros(10),
    }
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    t = 0
    x64 = x_tr.astype(np.float64)
    for _ in range(epochs):
        order = rng.permutation(len(x64))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            g = grads(p, x64[idx], y_tr[idx])
            t += 1
            for k in p:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                mh = m[k] / (1 - 0.9 ** t)
                vh = v[k] / (1 - 0.999 ** t)
                p[k] -= lr * mh / (np.sqrt(vh) + 1e-8)
    nodes = [
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["mp"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["probs"], axis=-1),
    ]
    inits = [
        ("wc", p["wc"].reshape(8, 1, 3, 3).astype(np.float32)),
        ("bc", p["bc"].astype(np.float32)),
        ("wf", p["wf"].astype(np.float32)),
        ("bf", p["bf"].astype(np.float32)),
    ]
    save_model(nodes, inits, path, "digits_cnn")


def main():
    os.makedirs(OUT, exist_ok=True)
    x_tr, x_te, y_tr, y_te = data()
    mlp(x_tr, y_tr, os.path.join(OUT, "mlp.onnx"))
    cnn(x_tr, y_tr, os.path.join(OUT, "cnn.onnx"))
    np.save(os.path.join(OUT, "x_test.npy"), x_te)
    np.save(os.path.join(OUT, "y_test.npy"), y_te)
    lines = []
    for name in ["mlp", "cnn"]:
        sess = ort.InferenceSession(os.path.join(OUT, f"{name}.onnx"), providers=["CPUExecutionProvider"])
        (probs,) = sess.run(None, {"x": x_te})
        np.save(os.path.join(OUT, f"{name}_probs.npy"), probs)
        acc = float((probs.argmax(1) == y_te).mean())
        lines.append(f"{name} {acc:.4f} ({int(round(acc * len(y_te)))}/{len(y_te)})")
    with open(os.path.join(OUT, "accuracy.txt"), "w") as f:
        f.write("# test accuracy on the held-out digits split, from onnxruntime's outputs\n")
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
