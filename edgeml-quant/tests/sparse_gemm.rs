//! The sparse INT8 product (`edgeml_quant::sparse`) against the dense GEMM on the same
//! operands: random shapes (row counts across the 16-row blocks and 256-row passes,
//! column counts across the 32-column chunks), 80–100 % of the weights at their zero
//! point, per-tensor and per-column zero points, u8 and i8 activations and weights,
//! extreme values; i32, requantized u8/i8 (with Relu and Clip) and f32 outputs must be
//! bit-identical (`assert_eq!` on the bits), on every kernel path this CPU has, on one
//! and two threads.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::sparse::{self, SparseB};
use edgeml_quant::*;
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

/// Deterministic bytes; `extreme` makes half of them 0 or 255.
fn bytes(n: usize, seed: u64, extreme: bool) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = (s >> 32) as u8;
            if extreme && r.is_multiple_of(2) {
                if r.is_multiple_of(4) { 255 } else { 0 }
            } else {
                r
            }
        })
        .collect()
}

fn elems<T: QElem>(v: &[u8]) -> Vec<T> {
    v.iter()
        .map(|&b| {
            let x = if T::SIGNED {
                i32::from(b) - 128
            } else {
                i32::from(b)
            };
            T::from_i32_clamped(x)
        })
        .collect()
}

/// A `k × n` weight whose entries sit at their column's zero point with probability
/// `zeros`, and that zero point per column (all equal when not `per_col`).
fn weights<T: QElem>(
    k: usize,
    n: usize,
    zeros: f64,
    per_col: bool,
    seed: u64,
) -> (Array2<T>, Vec<T>) {
    let zp: Vec<T> = if per_col {
        elems(&bytes(n, seed ^ 0x55, false))
    } else {
        vec![elems::<T>(&bytes(1, seed ^ 0x55, false))[0]; n]
    };
    let vals: Vec<T> = elems(&bytes(k * n, seed, true));
    let pick = bytes(k * n, seed ^ 0xabc, false);
    let mut b = Array2::from_shape_vec((k, n), vals).unwrap();
    for ((kk, j), w) in b.indexed_iter_mut() {
        if f64::from(pick[kk * n + j]) < zeros * 256.0 {
            *w = zp[j];
        }
    }
    (b, zp)
}

fn zps<T: QElem>(zp: &[T], per_col: bool) -> ZeroPoints<'_, T> {
    if per_col {
        ZeroPoints::PerColumn(zp)
    } else {
        ZeroPoints::PerTensor(zp[0])
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    zeros: f64,
    per_col: bool,
    seed: u64,
    act: u8,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![0usize..40, 250usize..300],
        1usize..90,
        1usize..80,
        0.8f64..=1.0,
        any::<bool>(),
        any::<u64>(),
        0u8..3,
    )
        .prop_map(|(m, k, n, zeros, per_col, seed, act)| Case {
            m,
            k,
            n,
            zeros: if seed.is_multiple_of(8) { 1.0 } else { zeros },
            per_col,
            seed,
            act,
        })
}

/// Every output form, dense against sparse, for activations `T`, weights `W` and
/// requantized output `O`.
fn check<T: QElem, W: QElem, O: QElem + PartialEq>(c: Case) {
    let a = Array2::from_shape_vec((c.m, c.k), elems::<T>(&bytes(c.m * c.k, c.seed ^ 7, true)))
        .unwrap();
    let a_zp = elems::<T>(&bytes(1, c.seed ^ 9, false))[0];
    let (b, zp) = weights::<W>(c.k, c.n, c.zeros, c.per_col, c.seed);
    let dense = PackedB::new(b.view(), zps(&zp, c.per_col)).unwrap();
    let zeros = sparse::offset_zeros(b.view(), zps(&zp, c.per_col)).unwrap();
    let mult: Vec<f32> = (0..c.n)
        .map(|j| 1e-3 * (1 + (c.seed as usize + j) % 40) as f32)
        .collect();
    let bias: Vec<i32> = bytes(c.n, c.seed ^ 3, false)
        .iter()
        .map(|&v| (i32::from(v) - 128) * 97)
        .collect();
    let out_zp = elems::<O>(&bytes(1, c.seed ^ 11, false))[0].to_i32();
    let activation = match c.act {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Clip {
            min: out_zp - 20,
            max: out_zp + 30,
        },
    };
    let rq = Requant {
        multipliers: &mult,
        zero_point: out_zp,
        bias: Some(&bias),
        activation,
    };
    let dq = Dequant {
        multipliers: &mult,
        bias: Some(&bias),
    };
    let one = GemmOptions { threads: 1 };
    let mut want_i = Array2::<i32>::zeros((c.m, c.n));
    gemm_i32(a.view(), a_zp, &dense, want_i.view_mut(), &one).unwrap();
    let mut want_q = Array2::<O>::from_elem((c.m, c.n), O::from_i32_clamped(0));
    gemm_requant(a.view(), a_zp, &dense, &rq, want_q.view_mut(), &one).unwrap();
    let mut want_f = Array2::<f32>::zeros((c.m, c.n));
    gemm_f32(a.view(), a_zp, &dense, &dq, want_f.view_mut(), &one).unwrap();
    for isa in Isa::available() {
        let sb = SparseB::with_isa(b.view(), zps(&zp, c.per_col), isa).unwrap();
        assert_eq!(sb.nnz() + zeros, c.k * c.n, "{isa}: stored entries");
        for threads in [1, 2] {
            let opts = GemmOptions { threads };
            let ctx = format!("{isa}, {threads} threads, {c:?}");
            let mut got = Array2::<i32>::from_elem((c.m, c.n), 7);
            sparse::gemm_i32(a.view(), a_zp, &sb, got.view_mut(), &opts).unwrap();
            assert_eq!(got, want_i, "i32: {ctx}");
            let mut got = Array2::<O>::from_elem((c.m, c.n), O::from_i32_clamped(1));
            sparse::gemm_requant(a.view(), a_zp, &sb, &rq, got.view_mut(), &opts).unwrap();
            assert!(got == want_q, "{}: {ctx}", O::NAME);
            let mut got = Array2::<f32>::from_elem((c.m, c.n), f32::NAN);
            sparse::gemm_f32(a.view(), a_zp, &sb, &dq, got.view_mut(), &opts).unwrap();
            let bits = |x: &Array2<f32>| x.mapv(f32::to_bits);
            assert_eq!(bits(&got), bits(&want_f), "f32: {ctx}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn u8_activations_i8_weights(c in case()) {
        check::<u8, i8, u8>(c);
    }

    #[test]
    fn i8_activations_i8_weights(c in case()) {
        check::<i8, i8, i8>(c);
    }

    #[test]
    fn u8_activations_u8_weights(c in case()) {
        check::<u8, u8, i8>(c);
    }

    #[test]
    fn i8_activations_u8_weights(c in case()) {
        check::<i8, u8, u8>(c);
    }
}

/// A strided output view (every other column of a wider array) and a transposed
/// activation view give the dense results too.
#[test]
fn strided_views_match_dense() {
    let c = Case {
        m: 37,
        k: 70,
        n: 45,
        zeros: 0.9,
        per_col: true,
        seed: 42,
        act: 0,
    };
    let at = Array2::from_shape_vec((c.k, c.m), elems::<u8>(&bytes(c.m * c.k, 5, true))).unwrap();
    let a: ArrayView2<'_, u8> = at.t();
    let (b, zp) = weights::<i8>(c.k, c.n, c.zeros, true, c.seed);
    let dense = PackedB::new(b.view(), ZeroPoints::PerColumn(&zp)).unwrap();
    let sb = SparseB::new(b.view(), ZeroPoints::PerColumn(&zp)).unwrap();
    let mut want = Array2::<i32>::zeros((c.m, c.n));
    gemm_i32(a, 3, &dense, want.view_mut(), &GemmOptions::default()).unwrap();
    let mut wide = Array2::<i32>::zeros((c.m, 2 * c.n));
    let view = wide.slice_mut(ndarray::s![.., ..;2]);
    sparse::gemm_i32(a, 3, &sb, view, &GemmOptions { threads: 2 }).unwrap();
    assert_eq!(wide.slice(ndarray::s![.., ..;2]), want);
    assert!(wide.slice(ndarray::s![.., 1..;2]).iter().all(|&v| v == 0));
}

/// Shape errors name the operands, as the dense GEMM's do.
#[test]
fn shape_errors() {
    let b = Array2::<i8>::zeros((4, 3));
    let sb = SparseB::new(b.view(), ZeroPoints::PerTensor(0)).unwrap();
    assert_eq!(sb.nnz(), 0);
    let a = Array2::<u8>::zeros((2, 5));
    let mut out = Array2::<i32>::zeros((2, 3));
    let e = sparse::gemm_i32(a.view(), 0, &sb, out.view_mut(), &GemmOptions::default());
    assert!(matches!(e, Err(Error::Shape(_))), "{e:?}");
    let zp = [0i8; 2];
    let e = SparseB::new(b.view(), ZeroPoints::PerColumn(&zp));
    assert!(matches!(e, Err(Error::Shape(_))), "{e:?}");
}
