#!/usr/bin/env python3
"""Export torchvision architectures and a small transformer encoder with `torch.onnx`.

For float speed measurements (scripts/bench_real_models.py): the graphs are what a PyTorch
user gets from `torch.onnx.export(model.eval(), ...)` with the default (dynamo) exporter,
written as one self-contained file. Weights are PyTorch's default initialisation with a
fixed seed (torchvision's pretrained weights are not downloadable here), which leaves the
operator mix, shapes and work of the trained networks unchanged: right for latency, not for
accuracy. BatchNorm statistics are then set by forward passes in training mode over a few
batches of uniform [0, 1) images, so activations have the scale of a trained network (with
the initial statistics they shrink layer by layer, to about 1e-14 at EfficientNet-B0's
logits).

  - mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0: torchvision, 1x3x224x224;
  - transformer: a BERT-mini-sized encoder, `torch.nn.TransformerEncoder` with 4 layers,
    d_model 256, 4 heads, feed-forward 1024, GELU, post-norm, on a 1x128x256 float input
    (the embeddings; no token lookup).

Needs `pip install torch torchvision onnxscript` (not in requirements.txt: CI never runs
this). Usage:

    python3 scripts/make_torch_models.py NAME OUT.onnx
"""

import sys

import torch
import torchvision


def transformer():
    layer = torch.nn.TransformerEncoderLayer(
        d_model=256, nhead=4, dim_feedforward=1024, dropout=0.0, activation="gelu", batch_first=True
    )
    return torch.nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False), [1, 128, 256]


MODELS = {
    "mobilenet_v3_small": lambda: (torchvision.models.mobilenet_v3_small(), [1, 3, 224, 224]),
    "mobilenet_v3_large": lambda: (torchvision.models.mobilenet_v3_large(), [1, 3, 224, 224]),
    "efficientnet_b0": lambda: (torchvision.models.efficientnet_b0(), [1, 3, 224, 224]),
    "transformer": transformer,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in MODELS:
        sys.exit(f"usage: make_torch_models.py {{{'|'.join(MODELS)}}} OUT.onnx")
    name, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model, shape = MODELS[name]()
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model.train()
        with torch.no_grad():
            for _ in range(8):
                model(torch.rand(16, *shape[1:]))
    model.eval()
    x = torch.rand(*shape)
    with torch.no_grad():
        torch.onnx.export(model, (x,), out, input_names=["input"], output_names=["output"], external_data=False)


if __name__ == "__main__":
    main()
