//! Cross-checks against onnxruntime outputs committed by
//! `scripts/make_int8_fixtures.py` (tests/fixtures/int8/), on every available path.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::*;
use ndarray::{Array2, Array4, ArrayD, IxDyn};
use std::collections::HashMap;

struct Fixture {
    op: String,
    attrs: HashMap<String, Vec<usize>>,
    tensors: HashMap<String, ArrayD<f64>>,
}

fn load(name: &str) -> Fixture {
    let path = format!(
        "{}/../tests/fixtures/int8/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut f = Fixture {
        op: String::new(),
        attrs: HashMap::new(),
        tensors: HashMap::new(),
    };
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("op") => f.op = it.next().unwrap().to_string(),
            Some("attr") => {
                let k = it.next().unwrap().to_string();
                f.attrs.insert(k, it.map(|v| v.parse().unwrap()).collect());
            }
            Some("tensor") => {
                let name = it.next().unwrap().to_string();
                let _dtype = it.next().unwrap();
                let nd: usize = it.next().unwrap().parse().unwrap();
                let shape: Vec<usize> = (0..nd)
                    .map(|_| it.next().unwrap().parse().unwrap())
                    .collect();
                assert_eq!(it.next(), Some(":"));
                let vals: Vec<f64> = it.map(|v| v.parse().unwrap()).collect();
                f.tensors
                    .insert(name, ArrayD::from_shape_vec(IxDyn(&shape), vals).unwrap());
            }
            _ => {}
        }
    }
    f
}

impl Fixture {
    fn t(&self, n: &str) -> &ArrayD<f64> {
        &self.tensors[n]
    }
    fn vec<T>(&self, n: &str, f: impl Fn(f64) -> T) -> Vec<T> {
        self.t(n).iter().map(|&v| f(v)).collect()
    }
    fn scalar(&self, n: &str) -> f64 {
        *self.t(n).iter().next().unwrap()
    }
    fn m2<T: Clone>(&self, n: &str, f: impl Fn(f64) -> T) -> Array2<T> {
        let t = self.t(n);
        Array2::from_shape_vec((t.shape()[0], t.shape()[1]), self.vec(n, f)).unwrap()
    }
    fn m4<T: Clone>(&self, n: &str, f: impl Fn(f64) -> T) -> Array4<T> {
        let s = self.t(n).shape().to_vec();
        Array4::from_shape_vec((s[0], s[1], s[2], s[3]), self.vec(n, f)).unwrap()
    }
}

fn matmul_integer<TB: QElem>(name: &str, map_b: fn(f64) -> TB) {
    let f = load(name);
    assert_eq!(f.op, "MatMulInteger");
    let a = f.m2("A", |v| v as u8);
    let b = f.m2("B", map_b);
    let za = f.scalar("a_zero_point") as u8;
    let zb = f.vec("b_zero_point", map_b);
    let exact = f.m2("exact", |v| v as i32);
    let ort = f.m2("ort", |v| v as i32);
    for isa in Isa::available() {
        let zp = if zb.len() == 1 {
            ZeroPoints::PerTensor(zb[0])
        } else {
            ZeroPoints::PerColumn(&zb)
        };
        let pb = PackedB::with_isa(b.view(), zp, isa).unwrap();
        let mut y = Array2::zeros(exact.dim());
        gemm_i32(a.view(), za, &pb, y.view_mut(), &GemmOptions::default()).unwrap();
        assert_eq!(y, exact, "{name} {isa} vs exact");
        if !name.ends_with("worst") {
            assert_eq!(y, ort, "{name} {isa} vs onnxruntime");
        }
    }
}

#[test]
fn ort_matmul_integer() {
    matmul_integer("matmulinteger_u8s8", |v| v as i8);
    matmul_integer("matmulinteger_u8s8_percol", |v| v as i8);
    matmul_integer("matmulinteger_u8u8", |v| v as u8);
    // The vpmaddubsw worst case: exact on every path. (onnxruntime's AVX2 u8s8 kernel
    // saturates here; on the VNNI machine that made the fixture it was exact too.)
    matmul_integer("matmulinteger_u8s8_worst", |v| v as i8);
}

#[test]
fn ort_qlinear_matmul() {
    let f = load("qlinearmatmul_u8s8");
    let a = f.m2("a", |v| v as u8);
    let b = f.m2("b", |v| v as i8);
    let bs = f.vec("b_scale", |v| v as f32);
    let mult = multipliers(f.scalar("a_scale") as f32, &bs, f.scalar("y_scale") as f32);
    let ort = f.m2("ort", |v| v as u8);
    let zb = f.vec("b_zero_point", |v| v as i8);
    for isa in Isa::available() {
        let pb = PackedB::with_isa(b.view(), ZeroPoints::PerColumn(&zb), isa).unwrap();
        let rq = Requant {
            multipliers: &mult,
            zero_point: f.scalar("y_zero_point") as i32,
            bias: None,
            activation: Activation::None,
        };
        let mut y = Array2::<u8>::zeros(ort.dim());
        gemm_requant(
            a.view(),
            f.scalar("a_zero_point") as u8,
            &pb,
            &rq,
            y.view_mut(),
            &GemmOptions::default(),
        )
        .unwrap();
        assert_eq!(y, ort, "{isa}");
    }
}

fn conv_params(f: &Fixture) -> ConvParams {
    let a = |k: &str| f.attrs[k].clone();
    ConvParams {
        group: a("group")[0],
        strides: [a("strides")[0], a("strides")[1]],
        // ONNX pads are [x1_begin, x2_begin, x1_end, x2_end] = [top, left, bottom, right].
        pads: [a("pads")[0], a("pads")[1], a("pads")[2], a("pads")[3]],
        dilations: [a("dilations")[0], a("dilations")[1]],
    }
}

#[test]
fn ort_qlinear_conv() {
    for name in [
        "qlinearconv_3x3",
        "qlinearconv_strided_grouped",
        "qlinearconv_depthwise",
        "qlinearconv_1x1",
    ] {
        let f = load(name);
        let p = conv_params(&f);
        let x = f.m4("x", |v| v as u8);
        let w = f.m4("w", |v| v as i8);
        let ws = f.vec("w_scale", |v| v as f32);
        let wz = f.vec("w_zero_point", |v| v as i8);
        let bias = f.vec("B", |v| v as i32);
        let mult = multipliers(f.scalar("x_scale") as f32, &ws, f.scalar("y_scale") as f32);
        let ort = f.m4("ort", |v| v as u8);
        for isa in Isa::available() {
            let pc = PackedConv::with_isa(w.view(), ZeroPoints::PerColumn(&wz), p, isa).unwrap();
            let rq = Requant {
                multipliers: &mult,
                zero_point: f.scalar("y_zero_point") as i32,
                bias: Some(&bias),
                activation: Activation::None,
            };
            let mut y = Array4::<u8>::zeros(ort.dim());
            qlinear_conv(
                x.view(),
                f.scalar("x_zero_point") as u8,
                &pc,
                &rq,
                y.view_mut(),
                &GemmOptions::default(),
            )
            .unwrap();
            assert_eq!(y, ort, "{name} {isa}");
        }
    }
}

#[test]
fn ort_conv_integer() {
    let f = load("convinteger_dilated");
    let p = conv_params(&f);
    let x = f.m4("x", |v| v as u8);
    let w = f.m4("w", |v| v as u8);
    let ort = f.m4("ort", |v| v as i32);
    for isa in Isa::available() {
        let pc = PackedConv::with_isa(
            w.view(),
            ZeroPoints::PerTensor(f.scalar("w_zero_point") as u8),
            p,
            isa,
        )
        .unwrap();
        let mut y = Array4::<i32>::zeros(ort.dim());
        conv_integer(
            x.view(),
            f.scalar("x_zero_point") as u8,
            &pc,
            y.view_mut(),
            &GemmOptions::default(),
        )
        .unwrap();
        assert_eq!(y, ort, "{isa}");
    }
}
