//! Every available ISA against an f64 reference, on odd shapes, strides and packings.

use super::*;
use proptest::prelude::*;

#[allow(clippy::too_many_arguments)]
fn reference(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    beta: f32,
    c: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0f64; m * n];
    let mut mag = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            let mut g = 0.0f64;
            for kk in 0..k {
                let p = a.at(i, kk) as f64 * b.at(kk, j) as f64;
                s += p;
                g += p.abs();
            }
            let cv = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c[i * n + j] as f64
            };
            out[i * n + j] = alpha as f64 * s + cv;
            mag[i * n + j] = (alpha as f64 * g).abs() + cv.abs();
        }
    }
    (out, mag)
}

pub(super) fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    alpha: f32,
    beta: f32,
    prepack: bool,
    seed: u64,
) {
    let av = data(m * k, seed);
    let bv = data(k * n, seed + 1);
    let a = if ta {
        MatRef::row_major(&av, k, m).unwrap().t()
    } else {
        MatRef::row_major(&av, m, k).unwrap()
    };
    let b = if tb {
        MatRef::row_major(&bv, n, k).unwrap().t()
    } else {
        MatRef::row_major(&bv, k, n).unwrap()
    };
    let c0 = data(m * n, seed + 2);
    let (want, mag) = reference(m, n, k, alpha, &a, &b, beta, &c0);
    let mut c = c0.clone();
    if beta == 0.0 {
        c.iter_mut().for_each(|x| *x = f32::NAN);
    }
    let (pa, pb) = (PackedA::pack(isa, a), PackedB::pack(isa, b));
    let (lhs, rhs) = if prepack {
        (Lhs::Packed(&pa), Rhs::Packed(&pb))
    } else {
        (Lhs::View(a), Rhs::View(b))
    };
    sgemm(isa, alpha, lhs, rhs, beta, &mut c, n).unwrap();
    for idx in 0..m * n {
        let tol = 1e-5 * (mag[idx] + 1.0);
        assert!(
            ((c[idx] as f64) - want[idx]).abs() <= tol,
            "{isa:?} m{m} n{n} k{k} ta{ta} tb{tb} prepack{prepack} at {idx}: {} vs {}",
            c[idx],
            want[idx]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn sgemm_matches_f64_reference(
        m in 0usize..40, n in 0usize..50, k in 0usize..70,
        ta in any::<bool>(), tb in any::<bool>(), prepack in any::<bool>(),
        alpha in prop::sample::select(vec![1.0f32, -0.5, 2.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, 0.25]),
        seed in any::<u64>(),
    ) {
        for isa in available_isas() {
            check(isa, m, n, k, ta, tb, alpha, beta, prepack, seed);
        }
    }
}

#[test]
fn sgemm_edge_shapes_and_deep_k() {
    for isa in available_isas() {
        for &(m, n, k) in &[
            (0, 0, 0),
            (1, 1, 1),
            (1, 37, 600),
            (7, 1, 300),
            (13, 31, 257),
            (97, 33, 520),
            (6, 16, 256),
            (8, 8, 1),
            // Past kc (768 on AVX2/AVX-512): C accumulated over k-blocks, a narrow last
            // panel (nn ≤ 8) and partial row tiles in each.
            (13, 41, 1601),
            (25, 7, 800),
        ] {
            check(isa, m, n, k, false, false, 1.0, 0.0, false, 3);
            check(isa, m, n, k, true, true, 0.5, 1.0, true, 4);
        }
    }
}

#[test]
fn sgemm_in_parallel_pool_matches() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        for isa in available_isas() {
            check(isa, 150, 300, 70, false, true, 1.0, 0.5, false, 9);
            check(isa, 1, 2000, 300, false, false, 1.0, 0.0, true, 10);
        }
    });
}

#[test]
fn sgemm_rejects_bad_shapes() {
    let a = vec![0.0; 6];
    let am = MatRef::row_major(&a, 2, 3).unwrap();
    let bm = MatRef::row_major(&a, 2, 3).unwrap();
    let mut c = vec![0.0; 9];
    assert!(
        sgemm(
            Isa::Scalar,
            1.0,
            Lhs::View(am),
            Rhs::View(bm),
            0.0,
            &mut c,
            3
        )
        .is_err()
    );
    assert!(MatRef::row_major(&a, 3, 3).is_err());
    let mut small = vec![0.0; 3];
    let bm = MatRef::row_major(&a, 3, 2).unwrap();
    assert!(
        sgemm(
            Isa::Scalar,
            1.0,
            Lhs::View(am),
            Rhs::View(bm),
            0.0,
            &mut small,
            2
        )
        .is_err()
    );
}

#[test]
fn parallelism_only_inside_a_multi_thread_pool() {
    assert!(
        !in_parallel_pool(),
        "outside any pool the kernels stay on the calling thread"
    );
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    assert!(two.install(in_parallel_pool));
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert!(!one.install(in_parallel_pool));
}

/// Runs a fixed GEMM on every float path this CPU has and prints one line per path of
/// this architecture: `RAN:` or `SKIP: ... this CPU lacks it` (the proptests above loop
/// over the available paths only). `.ci/run` runs it with `--nocapture`.
#[test]
fn every_available_float_path_is_exercised() {
    let arch: &[Isa] = if cfg!(target_arch = "x86_64") {
        &[Isa::Avx512, Isa::Avx2, Isa::Scalar]
    } else if cfg!(target_arch = "aarch64") {
        &[Isa::Neon, Isa::Scalar]
    } else {
        &[Isa::Scalar]
    };
    let av = available_isas();
    assert_eq!(av.first(), Some(&Isa::Scalar), "{av:?}");
    for &isa in arch {
        if !av.contains(&isa) {
            println!(
                "SKIP: float kernel tests on {}: need it, this CPU lacks it",
                isa.name()
            );
            continue;
        }
        check(isa, 13, 31, 257, false, true, -0.5, 0.25, true, 7);
        check(isa, 7, 1, 300, true, false, 1.0, 0.0, false, 8);
        println!("RAN: float kernel tests on {}", isa.name());
    }
}
