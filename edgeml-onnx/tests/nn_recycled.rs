//! Outputs drawn from recycled buffers must be written completely.
//!
//! The convolution's GEMM paths and the pooling operators take their output from the
//! per-thread buffer pool without zero-filling it (`take_f32_overwritten`): they must store
//! every element themselves. Each model here first computes a NaN tensor of exactly the
//! output's size from the input `p` and frees it (`Relu` then `ReduceSum`), so that the
//! operator under test is handed that NaN-filled block; a single element left unwritten
//! shows up as NaN in the output. Outputs are compared with a float64 direct
//! convolution / pooling written out here.

mod common;

use edgeml_core::DType;
use edgeml_onnx::{Attribute, Dim, Graph, Node, Plan, PlanOptions, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};

fn vi(name: &str, shape: Option<&[usize]>) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(DType::F32),
        shape: shape.map(|s| s.iter().map(|&d| Dim::Known(d)).collect()),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], out: &str, attributes: Vec<(String, Attribute)>) -> Node {
    Node {
        name: out.to_owned(),
        op_type: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![out.to_owned()],
        attributes,
        ..Default::default()
    }
}

/// Deterministic values in [-1, 1).
fn vals(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("test shape"))
}

/// 2-D geometry shared by Conv and MaxPool: kernel, strides, pads (top, left, bottom,
/// right), dilations.
#[derive(Clone, Copy)]
struct Win {
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 4],
    d: [usize; 2],
}

impl Win {
    fn attrs(&self) -> Vec<(String, Attribute)> {
        let ints = |v: &[usize]| Attribute::Ints(v.iter().map(|&x| x as i64).collect());
        vec![
            ("kernel_shape".into(), ints(&self.k)),
            ("strides".into(), ints(&self.s)),
            (
                "pads".into(),
                ints(&[self.p[0], self.p[1], self.p[2], self.p[3]]),
            ),
            ("dilations".into(), ints(&self.d)),
        ]
    }

    fn out(&self, h: usize, w: usize) -> [usize; 2] {
        let o = |n: usize, a: usize, lo: usize, hi: usize| {
            (n + lo + hi - (self.k[a] - 1) * self.d[a] - 1) / self.s[a] + 1
        };
        [o(h, 0, self.p[0], self.p[2]), o(w, 1, self.p[1], self.p[3])]
    }

    /// Input position of output `(oy, ox)` and tap `(ky, kx)`, if inside the image.
    fn at(&self, oy: usize, ox: usize, ky: usize, kx: usize, h: usize, w: usize) -> Option<usize> {
        let iy = (oy * self.s[0] + ky * self.d[0]) as isize - self.p[0] as isize;
        let ix = (ox * self.s[1] + kx * self.d[1]) as isize - self.p[1] as isize;
        (iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w)
            .then(|| iy as usize * w + ix as usize)
    }
}

/// Float64 direct convolution of one image: x [c, h, w], weights [m, c/group, kh, kw].
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    wt: &[f32],
    bias: &[f32],
    m: usize,
    group: usize,
    win: Win,
    relu: bool,
) -> Vec<f64> {
    let [oh, ow] = win.out(h, w);
    let (c_g, m_g) = (c / group, m / group);
    let mut y = vec![0.0f64; m * oh * ow];
    for oc in 0..m {
        let g = oc / m_g;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = f64::from(bias[oc]);
                for ci in 0..c_g {
                    let plane = &x[(g * c_g + ci) * h * w..][..h * w];
                    for ky in 0..win.k[0] {
                        for kx in 0..win.k[1] {
                            if let Some(i) = win.at(oy, ox, ky, kx, h, w) {
                                let wv = wt[((oc * c_g + ci) * win.k[0] + ky) * win.k[1] + kx];
                                acc += f64::from(wv) * f64::from(plane[i]);
                            }
                        }
                    }
                }
                y[(oc * oh + oy) * ow + ox] = if relu { acc.max(0.0) } else { acc };
            }
        }
    }
    y
}

/// Float64 max pooling of one image x [c, h, w] (padding never wins).
fn maxpool_ref(x: &[f32], c: usize, h: usize, w: usize, win: Win) -> Vec<f64> {
    let [oh, ow] = win.out(h, w);
    let mut y = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let plane = &x[ch * h * w..][..h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = f64::NEG_INFINITY;
                for ky in 0..win.k[0] {
                    for kx in 0..win.k[1] {
                        if let Some(i) = win.at(oy, ox, ky, kx, h, w) {
                            best = best.max(f64::from(plane[i]));
                        }
                    }
                }
                y.push(best);
            }
        }
    }
    y
}

/// Runs `ops` (the last of which writes `y`, of `want.len()` elements) after a NaN
/// block of that size has been freed, twice, at 1 and 2 threads, and compares `y` with
/// `want`.
fn check(
    label: &str,
    ops: Vec<Node>,
    x: (&[usize], Vec<f32>),
    initializers: Vec<(String, Tensor)>,
    want: &[f64],
) {
    let out_len = want.len();
    assert!(out_len >= 4096, "{label}: too small to be pooled");
    let mut nodes = vec![
        node("Relu", &["p"], "t", vec![]),
        node("ReduceSum", &["t"], "s", vec![]),
    ];
    nodes.extend(ops);
    let graph = Graph {
        nodes,
        inputs: vec![vi("p", Some(&[out_len])), vi("x", Some(x.0))],
        outputs: vec![vi("s", None), vi("y", None)],
        initializers,
        ..Default::default()
    };
    let m = common::onnx_model(graph, 17);
    for threads in [1, 2] {
        let plan = Plan::new(&m, PlanOptions::with_threads(threads)).expect("plan");
        for run in 0..2 {
            let feeds = [
                ("p", f32t(&[out_len], vec![f32::NAN; out_len])),
                ("x", f32t(x.0, x.1.clone())),
            ];
            let out = plan.run(&feeds).expect("run");
            let s = out[0].1.as_f32().expect("s");
            assert!(s.iter().all(|v| v.is_nan()), "{label}: poison not computed");
            let y = out[1].1.as_f32().expect("y");
            assert_eq!(y.len(), out_len, "{label}");
            for (i, (&g, &e)) in y.iter().zip(want).enumerate() {
                assert!(
                    (f64::from(g) - e).abs() <= 1e-4 + 1e-4 * e.abs(),
                    "{label} ({threads} threads, run {run}): y[{i}] = {g}, expected {e}"
                );
            }
        }
    }
}

/// One Conv case, with bias, with and without a following Relu (fused at plan time):
/// input [1, c, h, w], m output channels, `group` groups.
fn conv_case(label: &str, c: usize, h: usize, w: usize, m: usize, group: usize, win: Win) {
    let wshape = [m, c / group, win.k[0], win.k[1]];
    let wt = vals(wshape.iter().product(), 2);
    let bias = vals(m, 3);
    let x = vals(c * h * w, 1);
    for relu in [false, true] {
        let want = conv_ref(&x, c, h, w, &wt, &bias, m, group, win, relu);
        let mut attrs = win.attrs();
        attrs.push(("group".into(), Attribute::Int(group as i64)));
        let inits = vec![
            ("w".to_string(), f32t(&wshape, wt.clone())),
            ("b".to_string(), f32t(&[m], bias.clone())),
        ];
        let ops = if relu {
            vec![
                node("Conv", &["x", "w", "b"], "c", attrs),
                node("Relu", &["c"], "y", vec![]),
            ]
        } else {
            vec![node("Conv", &["x", "w", "b"], "y", attrs)]
        };
        let label = format!("{label}{}", if relu { " + relu" } else { "" });
        check(&label, ops, (&[1, c, h, w], x.clone()), inits, &want);
    }
}

const fn win(k: usize, s: usize, p: usize, d: usize) -> Win {
    Win {
        k: [k, k],
        s: [s, s],
        p: [p; 4],
        d: [d, d],
    }
}

#[test]
fn pointwise_conv_writes_every_element() {
    conv_case("1x1", 16, 32, 32, 24, 1, win(1, 1, 0, 1));
}

#[test]
fn phase_plane_convs_write_every_element() {
    // 3×3 stride 1 on a 64-wide plane: phase planes with junk columns (a column map).
    conv_case("3x3 s1", 4, 64, 64, 8, 1, win(3, 1, 1, 1));
    // 3×3 stride 2 from 3 channels (SqueezeNet's first layer, smaller).
    conv_case("3x3 s2", 3, 128, 128, 16, 1, win(3, 2, 1, 1));
    // Strided 1×1: one phase plane, no junk columns, C written in place.
    conv_case("1x1 s2", 8, 64, 64, 16, 1, win(1, 2, 0, 1));
    // Grouped 3×3 (two groups of 4 channels).
    conv_case("3x3 g2", 8, 32, 32, 16, 2, win(3, 1, 1, 1));
}

#[test]
fn im2col_conv_writes_every_element() {
    // A 12-wide plane has too many junk columns for phase planes: im2col panels.
    conv_case("3x3 w12", 4, 12, 12, 64, 1, win(3, 1, 1, 1));
    // Dilated with asymmetric padding.
    let mut w = win(3, 1, 0, 2);
    w.p = [2, 1, 0, 3];
    conv_case("3x3 d2", 4, 40, 36, 8, 1, w);
}

#[test]
fn maxpool_writes_every_element() {
    let (c, h, w) = (16, 64, 64);
    let x = vals(c * h * w, 4);
    for (label, win) in [("3x3 s2", win(3, 2, 0, 1)), ("2x2 s2 p1", win(2, 2, 1, 1))] {
        let want = maxpool_ref(&x, c, h, w, win);
        let op = node("MaxPool", &["x"], "y", win.attrs());
        check(label, vec![op], (&[1, c, h, w], x.clone()), vec![], &want);
    }
}

#[test]
fn convs_written_into_a_concat_write_every_element() {
    // The plan fuses Conv + Relu (1×1) and Conv (3×3) feeding a channel Concat into one
    // step whose output is the recycled block; each conv fills its channel range.
    let (c, h, w, m) = (8, 32, 32, 16);
    let x = vals(c * h * w, 5);
    let (w1, b1) = (vals(m * c, 6), vals(m, 7));
    let (w2, b2) = (vals(m * c * 9, 8), vals(m, 9));
    let mut want = conv_ref(&x, c, h, w, &w1, &b1, m, 1, win(1, 1, 0, 1), true);
    want.extend(conv_ref(
        &x,
        c,
        h,
        w,
        &w2,
        &b2,
        m,
        1,
        win(3, 1, 1, 1),
        false,
    ));
    let ops = vec![
        node("Conv", &["x", "w1", "b1"], "c1", win(1, 1, 0, 1).attrs()),
        node("Relu", &["c1"], "r1", vec![]),
        node("Conv", &["x", "w2", "b2"], "c2", win(3, 1, 1, 1).attrs()),
        node(
            "Concat",
            &["r1", "c2"],
            "y",
            vec![("axis".into(), Attribute::Int(1))],
        ),
    ];
    let inits = vec![
        ("w1".to_string(), f32t(&[m, c, 1, 1], w1)),
        ("b1".to_string(), f32t(&[m], b1)),
        ("w2".to_string(), f32t(&[m, c, 3, 3], w2)),
        ("b2".to_string(), f32t(&[m], b2)),
    ];
    check(
        "conv+relu | conv -> concat",
        ops,
        (&[1, c, h, w], x),
        inits,
        &want,
    );
}
