#!/usr/bin/env python3
"""Writes the corpus of malformed ONNX models in tests/fixtures/bad/.

Each model breaks one rule of the ONNX format (or one of edgeml's documented limits).
`MANIFEST` lists `file expected-kind`, where the kind is the edgeml ErrorKind the
loader must report: the expectation comes from the ONNX spec / the limit, not from
edgeml's behaviour. Run from the repository root:

    python3 scripts/make_bad_models.py
"""
import os
import shutil
import struct

import onnx
from onnx import TensorProto, helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "bad")
EXT = os.path.join(ROOT, "ext")
manifest = []


def model(nodes, inputs, outputs, inits=(), sparse=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits),
                          sparse_initializer=list(sparse))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                             producer_name="make_bad_models.py")


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def identity_model(init):
    """y = x + W with initializer `init` (named W)."""
    n = helper.make_node("Add", ["x", "W"], ["y"])
    return model([n], [f32("x", None)], [f32("y", None)], inits=[init])


def write(name, kind, data, folder=ROOT):
    if not isinstance(data, (bytes, bytearray)):
        data = data.SerializeToString()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    rel = os.path.relpath(os.path.join(folder, name), ROOT)
    manifest.append(f"{rel} {kind}")


def raw_tensor(name, dtype, dims, raw):
    t = TensorProto()
    t.name = name
    t.data_type = dtype
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def external_tensor(name, location, offset=None, length=None, dims=(4,)):
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    if offset is not None:
        e = t.external_data.add()
        e.key, e.value = "offset", str(offset)
    if length is not None:
        e = t.external_data.add()
        e.key, e.value = "length", str(length)
    return t


def nested_if(depth):
    """A model whose If nodes nest `depth` subgraphs deep."""
    inner = helper.make_graph([helper.make_node("Identity", ["x"], ["y0"])], "leaf", [],
                              [f32("y0", None)])
    leaf = inner
    for d in range(depth):
        cond = helper.make_node("If", ["c"], [f"y{d + 1}"], then_branch=inner, else_branch=leaf)
        inner = helper.make_graph([cond], f"level{d}", [], [f32(f"y{d + 1}", None)])
    top = inner.node[0]
    return model([top], [f32("x", None), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                 [f32(top.output[0], None)])


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(EXT)
    w4 = helper.make_tensor("W", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    good = identity_model(w4).SerializeToString()

    # --- protobuf-level damage
    write("truncated.onnx", "InvalidModel", good[: len(good) // 2])
    write("empty.onnx", "InvalidModel", b"")
    write("garbage.onnx", "InvalidModel", bytes(range(256)) * 4)
    # field 7 (graph) encoded with wire type 0 (varint) instead of 2: no graph.
    write("wrong_wire_type.onnx", "InvalidModel", b"\x08\x07" + b"\x38\x01")
    # a graph whose node list (field 1) is declared 2^31 bytes long in a 40-byte file
    write("huge_length_prefix.onnx", "InvalidModel",
          b"\x3a\x10" + b"\x0a\xff\xff\xff\xff\x07" + b"\x00" * 10)
    # packed float_data declared 9.9 MB long in a tiny file
    t = b"\x08\x04\x10\x01" + b"\x22" + bytes([0xc0, 0x96, 0xb1, 0x04]) + b"\x00" * 8
    g = b"\x2a" + bytes([len(t)]) + t
    write("huge_packed_prefix.onnx", "InvalidModel", b"\x08\x07\x3a" + bytes([len(g)]) + g)
    # packed int64_data (field 7) declared 9 999 999 bytes long: rust-protobuf reserves
    # one i64 per declared byte (80 MB) before noticing the data is missing.
    n = 9_999_999
    v = bytearray()
    while True:
        v.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    t = b"\x08\x04\x10\x07" + b"\x3a" + bytes(v) + b"\x00" * 8
    g = b"\x2a" + bytes([len(t)]) + t
    write("huge_packed_varint_prefix.onnx", "InvalidModel", b"\x08\x07\x3a" + bytes([len(g)]) + g)

    # --- tensor-level damage
    write("huge_dims.onnx", "LimitExceeded",
          identity_model(raw_tensor("W", TensorProto.FLOAT, [1 << 20, 1 << 20, 1 << 20], b"")))
    write("overflowing_dims.onnx", "LimitExceeded",
          identity_model(raw_tensor("W", TensorProto.FLOAT, [1 << 62, 1 << 62], b"")))
    write("zero_sized_huge_extents.onnx", "LimitExceeded",
          identity_model(raw_tensor("W", TensorProto.FLOAT, [0, 1 << 40, 1 << 40], b"")))
    write("negative_dim.onnx", "InvalidModel",
          identity_model(raw_tensor("W", TensorProto.FLOAT, [-4], b"\0" * 16)))
    write("dims_bytes_mismatch.onnx", "ShapeMismatch",
          identity_model(raw_tensor("W", TensorProto.FLOAT, [10], b"\0" * 8)))
    t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0, 3.0])
    write("typed_count_mismatch.onnx", "ShapeMismatch", identity_model(t))
    write("unknown_dtype.onnx", "InvalidModel", identity_model(raw_tensor("W", 99, [1], b"\0" * 4)))
    write("undefined_dtype.onnx", "InvalidModel", identity_model(raw_tensor("W", 0, [1], b"\0" * 4)))
    t = TensorProto(name="W", data_type=TensorProto.STRING, dims=[1], string_data=[b"hi"])
    write("string_tensor.onnx", "Unsupported", identity_model(t))
    t = helper.make_tensor("W", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    t.raw_data = struct.pack("<4f", 1, 2, 3, 4)
    write("two_data_fields.onnx", "InvalidModel", identity_model(t))
    sp = helper.make_sparse_tensor(
        helper.make_tensor("W", TensorProto.FLOAT, [2], [1.0, 2.0]),
        helper.make_tensor("W_idx", TensorProto.INT64, [2], [1, 9]), [4])
    n = helper.make_node("Add", ["x", "W"], ["y"])
    write("sparse_index_out_of_range.onnx", "InvalidModel",
          model([n], [f32("x", None)], [f32("y", None)], sparse=[sp]))
    # AttributeProto.type is a closed enum in python: patch the encoded field (20, varint).
    n = helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.5)
    b = model([n], [f32("x", None)], [f32("y", None)]).SerializeToString()
    assert b.count(b"\xa0\x01\x01") == 1
    write("unknown_attribute_type.onnx", "InvalidModel", b.replace(b"\xa0\x01\x01", b"\xa0\x01\x63"))

    # --- graph-level damage
    n1 = helper.make_node("Add", ["x", "b"], ["a"], name="first")
    n2 = helper.make_node("Relu", ["a"], ["b"], name="second")
    write("cycle.onnx", "InvalidModel", model([n1, n2], [f32("x", None)], [f32("b", None)]))
    n = helper.make_node("Relu", ["y"], ["y"], name="self_loop")
    write("self_loop.onnx", "InvalidModel", model([n], [f32("x", None)], [f32("y", None)]))
    n = helper.make_node("Add", ["x", "nowhere"], ["y"], name="dangling")
    write("missing_input.onnx", "InvalidModel", model([n], [f32("x", None)], [f32("y", None)]))
    n = helper.make_node("Relu", ["x"], ["y"])
    write("missing_output.onnx", "InvalidModel", model([n], [f32("x", None)], [f32("z", None)]))
    n1 = helper.make_node("Relu", ["x"], ["y"], name="one")
    n2 = helper.make_node("Neg", ["x"], ["y"], name="two")
    write("duplicate_output_names.onnx", "InvalidModel",
          model([n1, n2], [f32("x", None)], [f32("y", None)]))
    write("duplicate_initializers.onnx", "InvalidModel",
          model([helper.make_node("Add", ["x", "W"], ["y"])], [f32("x", None)], [f32("y", None)],
                inits=[w4, w4]))
    write("no_graph.onnx", "InvalidModel",
          helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString()[:0]
          + b"\x08\x07")
    x_bad = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    x_bad.type.tensor_type.shape.dim[0].dim_value = -2
    write("negative_dim_in_value_info.onnx", "InvalidModel",
          model([helper.make_node("Relu", ["x"], ["y"])], [x_bad], [f32("y", None)]))
    write("duplicate_graph_inputs.onnx", "InvalidModel",
          model([helper.make_node("Relu", ["x"], ["y"])], [f32("x", None), f32("x", None)],
                [f32("y", None)]))
    c = helper.make_node("Constant", [], ["y"], name="bad_const",
                         value=raw_tensor("", TensorProto.FLOAT, [3], b"\0" * 8))
    write("constant_attribute_dims_mismatch.onnx", "ShapeMismatch",
          model([c], [], [f32("y", None)]))
    write("nested_subgraphs_20.onnx", "LimitExceeded", nested_if(20))
    write("nested_subgraphs_30.onnx", "InvalidModel", nested_if(30))
    # a subgraph reading a value that exists nowhere
    inner = helper.make_graph([helper.make_node("Identity", ["ghost"], ["o"])], "then", [],
                              [f32("o", None)])
    n = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)
    write("subgraph_missing_capture.onnx", "InvalidModel",
          model([n], [helper.make_tensor_value_info("c", TensorProto.BOOL, [])], [f32("y", None)]))

    # --- external data
    with open(os.path.join(ROOT, "outside.bin"), "wb") as f:
        f.write(struct.pack("<4f", 1, 2, 3, 4))
    with open(os.path.join(EXT, "weights.bin"), "wb") as f:
        f.write(struct.pack("<4f", 1, 2, 3, 4))
    os.symlink("../outside.bin", os.path.join(EXT, "link.bin"))
    cases = [
        ("external_absolute.onnx", "UnsafePath", external_tensor("W", "/etc/passwd")),
        ("external_dotdot.onnx", "UnsafePath", external_tensor("W", "../outside.bin")),
        ("external_dotdot_inner.onnx", "UnsafePath", external_tensor("W", "sub/../../outside.bin")),
        ("external_symlink_out.onnx", "UnsafePath", external_tensor("W", "link.bin")),
        ("external_windows_drive.onnx", "UnsafePath", external_tensor("W", "C:\\weights.bin")),
        ("external_length_beyond_file.onnx", "InvalidModel",
         external_tensor("W", "weights.bin", length=1000)),
        ("external_offset_beyond_file.onnx", "InvalidModel",
         external_tensor("W", "weights.bin", offset=1 << 40)),
        ("external_length_mismatch.onnx", "ShapeMismatch",
         external_tensor("W", "weights.bin", length=8)),
        ("external_missing_file.onnx", "Io", external_tensor("W", "no_such_file.bin")),
        ("external_bad_offset.onnx", "InvalidModel", external_tensor("W", "weights.bin", offset=-3)),
    ]
    for name, kind, t in cases:
        write(name, kind, identity_model(t), folder=EXT)

    with open(os.path.join(ROOT, "MANIFEST"), "w") as f:
        f.write("# file expected-ErrorKind (written by scripts/make_bad_models.py)\n")
        f.write("\n".join(manifest) + "\n")
    print(f"wrote {len(manifest)} bad models to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    main()
