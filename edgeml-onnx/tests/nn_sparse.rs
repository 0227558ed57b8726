//! The sparse kernel for constant weights (`kernels::spmm`) against a float64
//! reference, on every ISA of this CPU, and `MatMul`/`Gemm` run through it
//! (`SparseMode::Sparse`) against the dense path.

use edgeml_onnx::kernels::{self, MatRef, SparseB};
use edgeml_onnx::ops::default_registry;
use edgeml_onnx::{Attribute, BuildContext, Node, SparseMode, Tensor};
use proptest::prelude::*;

mod sparse_util;

use sparse_util::{assert_close, tensor, values};

/// A `k × n` weight: a fraction `zeros` of the entries zero, and each row (then each
/// column) emptied entirely with probability `empty`, decided by hashes of `seed`.
fn weight(k: usize, n: usize, zeros: f64, empty: f64, seed: u32) -> Vec<f32> {
    let u = |x: u64| {
        let h = x
            .wrapping_add(u64::from(seed))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 40) as f64 / (1u64 << 24) as f64
    };
    let mut w = values(k * n, seed ^ 0x55);
    for i in 0..k {
        let empty_row = u(1 << 40 | i as u64) < empty;
        for j in 0..n {
            let empty_col = u(1 << 41 | j as u64) < empty;
            if empty_row || empty_col || u((i * n + j) as u64) < zeros {
                w[i * n + j] = 0.0;
            }
        }
    }
    w
}

/// `alpha·A·B + beta·C0` in f64 (`beta == 0` ignores `C0`), and per element the bound
/// `Σ|alpha·a·b| + |beta·c0|` the rounding error is proportional to.
#[allow(clippy::too_many_arguments)]
fn reference(
    a: MatRef<'_>,
    at: &dyn Fn(usize, usize) -> f32,
    bt: &dyn Fn(usize, usize) -> f32,
    n: usize,
    alpha: f32,
    beta: f32,
    c0: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (m, k) = (a.rows(), a.cols());
    let mut want = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut g) = (0.0f64, 0.0f64);
            for kk in 0..k {
                let p = f64::from(at(i, kk)) * f64::from(bt(kk, j));
                s += p;
                g += p.abs();
            }
            let (a, b) = (f64::from(alpha), f64::from(beta));
            let c = if beta == 0.0 {
                0.0
            } else {
                f64::from(c0[i * n + j])
            };
            want[i * n + j] = a * s + b * c;
            mag[i * n + j] = (a * g).abs() + (b * c).abs();
        }
    }
    (want, mag)
}

fn check(got: &[f32], want: &[f64], mag: &[f64], what: &str) {
    for (idx, ((&g, &w), &e)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = 1e-5 * e + 1e-30;
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "{what}: element {idx}: {g} vs {w} (tolerance {tol})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random shapes (including empty ones), zero fractions from 0 to 1, empty rows and
    /// columns, transposed views of both operands, alpha and beta.
    #[test]
    fn spmm_matches_f64_reference(
        m in 0usize..40,
        k in 0usize..70,
        n in 0usize..70,
        zeros in prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0],
        empty in prop_oneof![Just(0.0), 0.0f64..0.5],
        trans_a in any::<bool>(),
        trans_b in any::<bool>(),
        alpha in prop_oneof![Just(1.0f32), Just(0.0), -2.0f32..2.0],
        beta in prop_oneof![Just(0.0f32), Just(1.0), -2.0f32..2.0],
        seed in any::<u32>(),
    ) {
        let a_data = values(m * k, seed);
        // A stored as [m, k] or transposed as [k, m] and viewed through `t()`.
        let a = if trans_a {
            let mut t = vec![0.0; m * k];
            for i in 0..m {
                for kk in 0..k {
                    t[kk * m + i] = a_data[i * k + kk];
                }
            }
            t
        } else {
            a_data.clone()
        };
        let av = if trans_a {
            MatRef::row_major(&a, k, m).expect("a").t()
        } else {
            MatRef::row_major(&a, m, k).expect("a")
        };
        let w = weight(k, n, zeros, empty, seed);
        let b = if trans_b {
            let mut t = vec![0.0; k * n];
            for kk in 0..k {
                for j in 0..n {
                    t[j * k + kk] = w[kk * n + j];
                }
            }
            t
        } else {
            w.clone()
        };
        let bv = if trans_b {
            MatRef::row_major(&b, n, k).expect("b").t()
        } else {
            MatRef::row_major(&b, k, n).expect("b")
        };
        let sb = SparseB::from_dense(bv).expect("compress");
        prop_assert_eq!((sb.rows(), sb.cols()), (k, n));
        prop_assert_eq!(sb.nnz(), w.iter().filter(|&&x| x != 0.0).count());
        let c0 = values(m * n, seed ^ 0xAA);
        let (want, mag) = reference(
            av,
            &|i, kk| a_data[i * k + kk],
            &|kk, j| w[kk * n + j],
            n,
            alpha,
            beta,
            &c0,
        );
        for isa in kernels::available_isas() {
            // beta == 0 must overwrite: NaN already in C must not leak through.
            let mut c = if beta == 0.0 { vec![f32::NAN; m * n] } else { c0.clone() };
            kernels::spmm(isa, alpha, av, &sb, beta, &mut c, n).expect("spmm");
            check(&c, &want, &mag, &format!("{} {m}x{k}x{n} zeros {zeros:.2}", isa.name()));
        }
    }

    /// A row stride wider than `n` leaves the columns past `n` untouched.
    #[test]
    fn spmm_respects_ldc(m in 1usize..20, k in 1usize..20, n in 1usize..20, pad in 1usize..5) {
        let a = values(m * k, 3);
        let w = weight(k, n, 0.6, 0.0, 9);
        let av = MatRef::row_major(&a, m, k).expect("a");
        let sb = SparseB::from_dense(MatRef::row_major(&w, k, n).expect("b")).expect("csc");
        let ldc = n + pad;
        let mut c = vec![7.0f32; (m - 1) * ldc + n];
        kernels::spmm(kernels::best_isa(), 1.0, av, &sb, 0.0, &mut c, ldc).expect("spmm");
        let (want, mag) =
            reference(av, &|i, kk| a[i * k + kk], &|kk, j| w[kk * n + j], n, 1.0, 0.0, &[]);
        for i in 0..m {
            check(&c[i * ldc..][..n], &want[i * n..][..n], &mag[i * n..][..n], "ldc");
            if i + 1 < m {
                prop_assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|&x| x == 7.0));
            }
        }
    }
}

/// Inside a pool with two threads the columns are split into tasks: same results as on
/// one thread, bit for bit (each column is computed by one task, in the same order).
#[test]
fn spmm_in_parallel_pool_equals_serial() {
    let (m, k, n) = (37, 300, 203);
    let a = values(m * k, 11);
    let w = weight(k, n, 0.85, 0.05, 12);
    let av = MatRef::row_major(&a, m, k).expect("a");
    let sb = SparseB::from_dense(MatRef::row_major(&w, k, n).expect("b")).expect("csc");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    for isa in kernels::available_isas() {
        let mut serial = vec![0.0f32; m * n];
        kernels::spmm(isa, 1.0, av, &sb, 0.0, &mut serial, n).expect("spmm");
        let mut par = vec![0.0f32; m * n];
        pool.install(|| kernels::spmm(isa, 1.0, av, &sb, 0.0, &mut par, n))
            .expect("spmm");
        assert_eq!(serial, par, "{}", isa.name());
        let (want, mag) = reference(
            av,
            &|i, kk| a[i * k + kk],
            &|kk, j| w[kk * n + j],
            n,
            1.0,
            0.0,
            &[],
        );
        check(&par, &want, &mag, isa.name());
    }
}

#[test]
fn spmm_rejects_bad_shapes() {
    let w = vec![1.0f32; 6];
    let sb = SparseB::from_dense(MatRef::row_major(&w, 2, 3).expect("b")).expect("csc");
    let a = vec![1.0f32; 6];
    let isa = kernels::best_isa();
    let mut c = vec![0.0f32; 6];
    let bad_k = MatRef::row_major(&a, 2, 3).expect("a");
    assert!(kernels::spmm(isa, 1.0, bad_k, &sb, 0.0, &mut c, 3).is_err());
    let av = MatRef::row_major(&a, 3, 2).expect("a");
    let mut small = vec![0.0f32; 8];
    assert!(kernels::spmm(isa, 1.0, av, &sb, 0.0, &mut small, 3).is_err());
    let mut c = vec![0.0f32; 9];
    kernels::spmm(isa, 1.0, av, &sb, 0.0, &mut c, 3).expect("fits");
    assert!(c.iter().all(|&x| x == 2.0));
}

/// Runs `node` with input 1 (`B`) constant at build time, in `mode`.
fn run_const_b(node: &Node, mode: SparseMode, inputs: &[Tensor]) -> Tensor {
    let reg = default_registry();
    let f = reg.lookup("", &node.op_type, 13).expect("registered");
    let consts = (0..inputs.len())
        .map(|i| (i == 1).then_some(&inputs[1]))
        .collect();
    let op = f
        .build(&BuildContext::new(node, 13, consts).with_sparse(mode))
        .expect("build");
    let args: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
    op.run(&args).expect("run").remove(0)
}

#[test]
fn gemm_sparse_equals_dense_for_trans_alpha_beta_and_bias() {
    let (m, k, n) = (5, 37, 19);
    for (trans_a, trans_b, alpha, beta, bias) in [
        (false, false, 1.0, 1.0, vec![n]),
        (false, true, 0.5, 2.0, vec![1, n]),
        (true, false, -1.5, 0.0, vec![m, n]),
        (true, true, 2.0, -0.5, vec![m, 1]),
        (false, true, 1.0, 1.0, vec![]),
    ] {
        let node = Node {
            op_type: "Gemm".into(),
            inputs: ["a", "b", "c"][..if bias.is_empty() { 2 } else { 3 }]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            outputs: vec!["y".into()],
            attributes: vec![
                ("transA".into(), Attribute::Int(i64::from(trans_a))),
                ("transB".into(), Attribute::Int(i64::from(trans_b))),
                ("alpha".into(), Attribute::Float(alpha)),
                ("beta".into(), Attribute::Float(beta)),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let a_shape = if trans_a { [k, m] } else { [m, k] };
        let b_shape = if trans_b { [n, k] } else { [k, n] };
        let mut inputs = vec![
            tensor(&a_shape, values(m * k, 1)),
            tensor(&b_shape, weight(b_shape[0], b_shape[1], 0.9, 0.1, 2)),
        ];
        if !bias.is_empty() {
            inputs.push(tensor(&bias, values(bias.iter().product(), 3)));
        }
        let dense = run_const_b(&node, SparseMode::Dense, &inputs);
        let sparse = run_const_b(&node, SparseMode::Sparse, &inputs);
        let what =
            format!("transA {trans_a} transB {trans_b} alpha {alpha} beta {beta} C {bias:?}");
        assert_close(&dense, &sparse, &what);
    }
}

#[test]
fn matmul_sparse_equals_dense_batched_and_vector() {
    let node = Node {
        op_type: "MatMul".into(),
        inputs: vec!["a".into(), "b".into()],
        outputs: vec!["y".into()],
        ..Default::default()
    };
    let (k, n) = (48, 33);
    let b = tensor(&[k, n], weight(k, n, 0.8, 0.1, 5));
    for a_shape in [vec![k], vec![1, k], vec![7, k], vec![2, 3, 5, k]] {
        let len = a_shape.iter().product();
        let inputs = [tensor(&a_shape, values(len, 4)), b.clone()];
        let dense = run_const_b(&node, SparseMode::Dense, &inputs);
        let sparse = run_const_b(&node, SparseMode::Sparse, &inputs);
        assert_close(&dense, &sparse, &format!("A {a_shape:?}"));
    }
}

#[test]
fn auto_follows_prefer_sparse() {
    assert!(!kernels::prefer_sparse(512, 512, 0));
    assert!(kernels::prefer_sparse(512, 512, 512 * 512));
    assert!(!kernels::prefer_sparse(0, 0, 0));
    for (k, n, zeros) in [(512, 512, 200_000), (64, 32, 1900), (1024, 1024, 100)] {
        assert_eq!(
            SparseMode::Auto.use_sparse(k, n, zeros),
            kernels::prefer_sparse(k, n, zeros)
        );
        assert!(SparseMode::Sparse.use_sparse(k, n, zeros));
        assert!(!SparseMode::Dense.use_sparse(k, n, zeros));
    }
}
