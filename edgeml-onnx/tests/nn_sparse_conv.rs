//! Convolutions with pruned constant weights through the sparse kernel
//! (`SparseMode::Sparse`, `kernels::spmm_packed_b`): against a float64 direct
//! convolution over random geometry and groups, on every ISA of this CPU; against the
//! dense path with every fused epilogue; 2 threads against 1 (plans:
//! `plan_sparse_conv.rs`).

use edgeml_onnx::kernels::{self, ColMap, MatRef, RowsB, SparseB};
use edgeml_onnx::ops::default_registry;
use edgeml_onnx::{Attribute, BuildContext, Node, SparseMode, Tensor};
use ndarray::IxDyn;
use proptest::prelude::*;

mod sparse_util;

use sparse_util::{assert_close, ints, pruned, tensor, values};

/// One convolution's attributes and operand shapes (spatial dims of any rank 1..=3).
#[derive(Debug, Clone)]
struct Geo {
    batch: usize,
    group: usize,
    c_g: usize,
    m_g: usize,
    inp: Vec<usize>,
    k: Vec<usize>,
    s: Vec<usize>,
    d: Vec<usize>,
    /// Begin pads then end pads (ONNX order).
    p: Vec<usize>,
}

impl Geo {
    fn rank(&self) -> usize {
        self.inp.len()
    }

    fn out(&self) -> Vec<usize> {
        (0..self.rank())
            .map(|a| {
                let span = self.inp[a] + self.p[a] + self.p[a + self.rank()];
                (span - ((self.k[a] - 1) * self.d[a] + 1)) / self.s[a] + 1
            })
            .collect()
    }

    fn fits(&self) -> bool {
        (0..self.rank()).all(|a| {
            self.inp[a] + self.p[a] + self.p[a + self.rank()] > (self.k[a] - 1) * self.d[a]
        })
    }

    fn x_shape(&self) -> Vec<usize> {
        [vec![self.batch, self.group * self.c_g], self.inp.clone()].concat()
    }

    fn w_shape(&self) -> Vec<usize> {
        [vec![self.group * self.m_g, self.c_g], self.k.clone()].concat()
    }

    fn y_shape(&self) -> Vec<usize> {
        [vec![self.batch, self.group * self.m_g], self.out()].concat()
    }

    fn node(&self, fused: Option<&str>) -> Node {
        let (op, inputs) = match fused {
            None => ("Conv", &["x", "w", "b"][..]),
            Some(_) => ("FusedConv", &["x", "w", "b", "z"][..]),
        };
        let mut n = Node::new(op, inputs, &["y"])
            .with_attr("group", Attribute::Int(self.group as i64))
            .with_attr("kernel_shape", ints(&self.k))
            .with_attr("strides", ints(&self.s))
            .with_attr("dilations", ints(&self.d))
            .with_attr("pads", ints(&self.p));
        if let Some(act) = fused {
            n = n.with_domain("com.microsoft");
            if !act.is_empty() {
                n = n.with_attr("activation", Attribute::String(act.as_bytes().to_vec()));
            }
            if act == "Clip" {
                n = n.with_attr("activation_params", Attribute::Floats(vec![-0.5, 0.75]));
            }
        }
        n
    }
}

/// Builds `node` with `W` and `B` (inputs 1, 2) constant, in `mode`, and runs it.
fn run(node: &Node, mode: SparseMode, inputs: &[Tensor]) -> Tensor {
    let reg = default_registry();
    let (domain, opset) = if node.domain.is_empty() {
        ("", 13)
    } else {
        ("com.microsoft", 1)
    };
    let f = reg
        .lookup(domain, &node.op_type, opset)
        .expect("registered");
    let consts = (0..inputs.len())
        .map(|i| (i == 1 || i == 2).then_some(&inputs[i]))
        .collect();
    let op = f
        .build(&BuildContext::new(node, opset, consts).with_sparse(mode))
        .expect("build");
    let args: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
    op.run(&args).expect("run").remove(0)
}

/// `relu?(Conv(x, w) + b + z)` in f64 by direct summation, and per element the bound
/// `Σ|w·x| + |b| + |z|` its rounding error is proportional to.
fn reference(
    g: &Geo,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    z: Option<&[f32]>,
    relu: bool,
) -> (Vec<f64>, Vec<f64>) {
    // Spatial dims left-padded to 3.
    let pad3 = |v: &[usize], fill: usize| {
        let mut o = vec![fill; 3 - v.len()];
        o.extend_from_slice(v);
        o
    };
    let r = g.rank();
    let (inp, k, s, d) = (pad3(&g.inp, 1), pad3(&g.k, 1), pad3(&g.s, 1), pad3(&g.d, 1));
    let p = pad3(&g.p[..r], 0);
    let out = pad3(&g.out(), 1);
    let (in_len, out_len, k_len): (usize, usize, usize) = (
        inp.iter().product(),
        out.iter().product(),
        k.iter().product(),
    );
    let (c, m) = (g.group * g.c_g, g.group * g.m_g);
    let mut want = vec![0.0; g.batch * m * out_len];
    let mut mag = vec![0.0; want.len()];
    for n in 0..g.batch {
        for oc in 0..m {
            let grp = oc / g.m_g;
            for o in 0..out_len {
                let pos = [o / (out[1] * out[2]), (o / out[2]) % out[1], o % out[2]];
                let (mut sum, mut bound) = (f64::from(b[oc]), f64::from(b[oc]).abs());
                for ci in 0..g.c_g {
                    let ic = grp * g.c_g + ci;
                    for t in 0..k_len {
                        let tap = [t / (k[1] * k[2]), (t / k[2]) % k[1], t % k[2]];
                        let ix: Vec<isize> = (0..3)
                            .map(|a| (pos[a] * s[a] + tap[a] * d[a]) as isize - p[a] as isize)
                            .collect();
                        if (0..3).any(|a| ix[a] < 0 || ix[a] as usize >= inp[a]) {
                            continue;
                        }
                        let xi =
                            (ix[0] as usize * inp[1] + ix[1] as usize) * inp[2] + ix[2] as usize;
                        let xv = f64::from(x[(n * c + ic) * in_len + xi]);
                        let wv = f64::from(w[(oc * g.c_g + ci) * k_len + t]);
                        sum += xv * wv;
                        bound += (xv * wv).abs();
                    }
                }
                let at = (n * m + oc) * out_len + o;
                if let Some(z) = z {
                    sum += f64::from(z[at]);
                    bound += f64::from(z[at]).abs();
                }
                want[at] = if relu { sum.max(0.0) } else { sum };
                mag[at] = bound;
            }
        }
    }
    (want, mag)
}

fn check(got: &Tensor, want: &[f64], mag: &[f64], what: &str) {
    let got = got.as_f32().expect("f32");
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, ((&g, &w), &e)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = 1e-5 * e + 1e-30;
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "{what}: element {i}: {g} vs {w} (tolerance {tol})"
        );
    }
}

/// A geometry of spatial rank 1 to 3 (2-D most often), with groups and channels-of-one
/// groups (depthwise, which stays dense, and single-channel inputs, which do not).
fn geo() -> impl Strategy<Value = Geo> {
    (
        prop_oneof![Just(1usize), Just(2), Just(2), Just(3)],
        1usize..3,
        1usize..4,
    )
        .prop_flat_map(|(rank, batch, group)| {
            let dims = |lo: usize, hi: usize| prop::collection::vec(lo..hi, rank);
            let size = if rank == 3 { 6 } else { 12 };
            (
                1usize..5,
                1usize..6,
                dims(1, size),
                dims(1, 4),
                dims(1, 3),
                dims(1, 3),
                prop::collection::vec(0usize..3, 2 * rank),
            )
                .prop_map(move |(c_g, m_g, inp, k, s, d, p)| Geo {
                    batch,
                    group,
                    c_g,
                    m_g,
                    inp,
                    k,
                    s,
                    d,
                    p,
                })
        })
        .prop_filter("output of at least one element", Geo::fits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Sparse `Conv` (and `FusedConv` with `Z` and `Relu`) against an f64 direct
    /// convolution, with about 90 % zero weights (sometimes all zero). Runs on the ISA
    /// the operators use; `conv_proptest_runs_on_every_isa` reruns it on the others.
    #[test]
    fn conv_sparse_matches_f64_direct_convolution(
        g in geo(),
        zeros in prop_oneof![Just(1.0), 0.85f64..0.97],
        fused in any::<bool>(),
        seed in any::<u32>(),
    ) {
        if let Ok(v) = std::env::var("EDGEML_KERNELS") {
            prop_assert_eq!(kernels::best_isa().name(), v.as_str());
        }
        let (xs, ws, ys) = (g.x_shape(), g.w_shape(), g.y_shape());
        let len = |s: &[usize]| s.iter().product::<usize>();
        let x = values(len(&xs), seed);
        let w = pruned(len(&ws), zeros, seed);
        let b = values(ws[0], seed ^ 0xB1A5);
        let z = fused.then(|| values(len(&ys), seed ^ 0x2));
        let mut inputs = vec![
            tensor(&xs, x.clone()),
            tensor(&ws, w.clone()),
            tensor(&[ws[0]], b.clone()),
        ];
        if let Some(z) = &z {
            inputs.push(tensor(&ys, z.clone()));
        }
        let node = g.node(fused.then_some("Relu"));
        let got = run(&node, SparseMode::Sparse, &inputs);
        prop_assert_eq!(got.shape(), ys.as_slice());
        let (want, mag) = reference(&g, &x, &w, &b, z.as_deref(), fused);
        check(&got, &want, &mag, &format!("{} {g:?}", kernels::best_isa().name()));
    }

    /// The kernel on its own, on every ISA: `C = A·B` for a sparse `A` and a strided
    /// dense `B`, with a column map, a row stride and an epilogue, against f64.
    #[test]
    fn spmm_packed_b_matches_f64_reference(
        m in 0usize..40,
        k in 0usize..60,
        pitch in 1usize..30,
        rows in 0usize..8,
        drop in 0usize..4,
        zeros in prop_oneof![Just(1.0), Just(0.0), 0.5f64..1.0],
        pad in 0usize..3,
        seed in any::<u32>(),
    ) {
        let width = pitch.saturating_sub(drop).max(1);
        let n_log = rows * pitch;
        let map = (width < pitch).then_some(ColMap { pitch, width });
        let n = rows * width;
        let bdata = values(k * (n_log + 3), seed);
        let bsrc = RowsB::new(&bdata, k, n_log, n_log + 3).expect("b");
        let a = pruned(m * k, zeros, seed);
        let at = SparseB::from_dense(MatRef::row_major(&a, m, k).expect("a").t()).expect("csc");
        prop_assert_eq!((at.rows(), at.cols()), (k, m));
        let ldc = n + pad;
        // Epilogue: add 10·row + column, to check the coordinates it is given.
        let epi = |i: usize, j0: usize, v: &mut [f32]| {
            for (q, o) in v.iter_mut().enumerate() {
                *o += (10 * i + j0 + q) as f32;
            }
        };
        for isa in kernels::available_isas() {
            let mut c = vec![f32::NAN; m.saturating_sub(1) * ldc + n];
            kernels::spmm_packed_b(isa, &at, &bsrc, &mut c, ldc, Some(&epi), map).expect("spmm");
            for i in 0..m {
                for jp in 0..n {
                    let j = (jp / width) * pitch + jp % width;
                    let (mut s, mut e) = (0.0f64, 0.0f64);
                    for kk in 0..k {
                        let p = f64::from(a[i * k + kk]) * f64::from(bdata[kk * (n_log + 3) + j]);
                        s += p;
                        e += p.abs();
                    }
                    let extra = (10 * i + jp) as f64;
                    let got = f64::from(c[i * ldc + jp]);
                    prop_assert!(
                        (got - s - extra).abs() <= 1e-5 * (e + extra) + 1e-30,
                        "{} ({i}, {jp}): {got} vs {}", isa.name(), s + extra
                    );
                }
                if i + 1 < m {
                    prop_assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()));
                }
            }
        }
    }
}

/// Reruns `conv_sparse_matches_f64_direct_convolution` in a child process for each
/// other ISA this CPU has (`EDGEML_KERNELS`, read once per process, picks the
/// operators' ISA). Skipped when this process already runs under a forced ISA.
#[test]
fn conv_proptest_runs_on_every_isa() {
    if std::env::var_os("EDGEML_KERNELS").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    for isa in kernels::available_isas() {
        if isa == kernels::best_isa() {
            continue;
        }
        // Under an emulator (`scripts/test-aarch64.sh`) the child runs through it too.
        let runner = std::env::var("EDGEML_TEST_RUNNER").unwrap_or_default();
        let mut runner = runner.split_whitespace();
        let mut cmd = match runner.next() {
            Some(r) => {
                let mut c = std::process::Command::new(r);
                c.args(runner).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        let out = cmd
            .args([
                "conv_sparse_matches_f64_direct_convolution",
                "--exact",
                "--test-threads=1",
            ])
            .env("EDGEML_KERNELS", isa.name())
            .output()
            .expect("run the test binary");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{}: {text}\n{}",
            isa.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Geometries that take each im2col source: input rows (1×1), phase planes (2-D,
/// strided, dilated), packed im2col columns (3-D; 2-D with wide padding), plus groups.
fn shapes() -> Vec<Geo> {
    let g =
        |group, c_g, m_g, inp: &[usize], k: &[usize], s: &[usize], d: &[usize], p: &[usize]| Geo {
            batch: 2,
            group,
            c_g,
            m_g,
            inp: inp.to_vec(),
            k: k.to_vec(),
            s: s.to_vec(),
            d: d.to_vec(),
            p: p.to_vec(),
        };
    vec![
        g(
            1,
            24,
            16,
            &[9, 11],
            &[1, 1],
            &[1, 1],
            &[1, 1],
            &[0, 0, 0, 0],
        ),
        g(
            1,
            8,
            20,
            &[17, 15],
            &[3, 3],
            &[1, 1],
            &[1, 1],
            &[1, 1, 1, 1],
        ),
        g(2, 6, 9, &[13, 14], &[3, 2], &[2, 3], &[2, 1], &[2, 0, 1, 2]),
        g(1, 5, 7, &[6, 7], &[3, 3], &[1, 1], &[1, 1], &[4, 4, 4, 4]),
        g(
            3,
            4,
            5,
            &[5, 6, 7],
            &[2, 3, 2],
            &[1, 2, 1],
            &[1, 1, 2],
            &[1, 0, 1, 0, 1, 1],
        ),
        g(1, 1, 8, &[8, 8], &[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]),
        g(1, 7, 6, &[40], &[5], &[2], &[1], &[2, 2]),
    ]
}

fn operands(g: &Geo, zeros: f64, with_z: bool) -> Vec<Tensor> {
    let (xs, ws, ys) = (g.x_shape(), g.w_shape(), g.y_shape());
    let len = |s: &[usize]| s.iter().product::<usize>();
    let mut v = vec![
        tensor(&xs, values(len(&xs), 1)),
        tensor(&ws, pruned(len(&ws), zeros, 2)),
        tensor(&[ws[0]], values(ws[0], 3)),
    ];
    if with_z {
        v.push(tensor(&ys, values(len(&ys), 4)));
    }
    v
}

/// Forced sparse and dense agree within rounding, for plain `Conv` and `FusedConv`
/// with `Z` and each activation (the sparse path applies them as one epilogue).
#[test]
fn conv_sparse_equals_dense_with_every_epilogue() {
    for g in shapes() {
        for act in [
            None,
            Some(""),
            Some("Relu"),
            Some("Clip"),
            Some("LeakyRelu"),
            Some("Sigmoid"),
            Some("Tanh"),
            Some("HardSigmoid"),
            Some("Silu"),
            Some("HardSwish"),
        ] {
            let node = g.node(act);
            let inputs = operands(&g, 0.9, act.is_some());
            let dense = run(&node, SparseMode::Dense, &inputs);
            let sparse = run(&node, SparseMode::Sparse, &inputs);
            assert_close(&dense, &sparse, &format!("{act:?} {g:?}"));
        }
    }
}

/// Inside a pool with two threads the output columns are split into tasks: the same
/// results as on one thread, bit for bit.
#[test]
fn conv_sparse_two_threads_equal_one() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    for g in shapes() {
        let node = g.node(Some("Silu"));
        let inputs = operands(&g, 0.9, true);
        let one = run(&node, SparseMode::Sparse, &inputs);
        let two = pool.install(|| run(&node, SparseMode::Sparse, &inputs));
        assert_eq!(one, two, "{g:?}");
    }
}

/// A non-finite input meeting only zero weights stays out of a sparse result (the
/// documented difference from the dense path, which multiplies the zeros).
#[test]
fn zero_weights_are_skipped() {
    let g = &shapes()[0];
    let mut inputs = operands(g, 0.0, false);
    let Tensor::F32(w) = &mut inputs[1] else {
        panic!("f32")
    };
    // Input channel 0 meets only zero weights.
    w.index_axis_mut(ndarray::Axis(1), 0).fill(0.0);
    let Tensor::F32(x) = &mut inputs[0] else {
        panic!("f32")
    };
    x[IxDyn(&[0, 0, 0, 0])] = f32::NAN;
    let node = g.node(None);
    let sparse = run(&node, SparseMode::Sparse, &inputs);
    assert!(sparse.as_f32().expect("f32").iter().all(|v| v.is_finite()));
    let dense = run(&node, SparseMode::Dense, &inputs);
    assert!(dense.as_f32().expect("f32").iter().any(|v| v.is_nan()));
}
