//! The conv GEMM driver and the depthwise kernel against f64 references.

use super::tests_util::data;
use super::*;
use proptest::prelude::*;

fn check_packed_b(isa: Isa, m: usize, n: usize, k: usize, rs_extra: usize, seed: u64) {
    let av = data(m * k, seed);
    let rs = n + rs_extra;
    let bv = data(k.max(1) * rs, seed + 1);
    let bias = data(m, seed + 2);
    let a = MatRef::row_major(&av, m, k).unwrap();
    let pa = PackedA::pack(isa, a);
    let rhs = RowsB::new(&bv, k, n, rs).unwrap();
    let mut c = vec![f32::NAN; m * n];
    let seen = std::sync::Mutex::new(vec![0u8; m * n]);
    let epi = |i: usize, j0: usize, v: &mut [f32]| {
        let mut s = seen.lock().unwrap();
        for (q, x) in v.iter_mut().enumerate() {
            s[i * n + j0 + q] += 1;
            *x = (*x + bias[i]).max(0.0);
        }
    };
    for lhs in [Lhs::View(a), Lhs::Packed(&pa)] {
        c.fill(f32::NAN);
        seen.lock().unwrap().fill(0);
        sgemm_packed_b(isa, lhs, &rhs, &mut c, n, Some(&epi)).unwrap();
        assert!(
            seen.lock().unwrap().iter().all(|&x| x == 1),
            "epilogue once per element"
        );
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                let mut mag = 0.0f64;
                for kk in 0..k {
                    let p = av[i * k + kk] as f64 * bv[kk * rs + j] as f64;
                    s += p;
                    mag += p.abs();
                }
                let want = (s + bias[i] as f64).max(0.0);
                let got = c[i * n + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (mag + 1.0),
                    "{isa:?} m{m} n{n} k{k} at ({i},{j}): {got} vs {want}"
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_depthwise(isa: Isa, g: DepthwiseGeo, seed: u64) {
    let x = data(g.h * g.w, seed);
    let w = data(g.kh * g.kw, seed + 1);
    let bias = 0.25;
    let mut out = vec![f32::NAN; g.oh * g.ow];
    // A plane of other data first: the reused scratch must not leak it into the next.
    let mut scratch = DepthwiseScratch::default();
    let other = data(g.h * g.w, seed + 7);
    depthwise_plane(isa, &other, &w, bias, &g, &mut scratch, &mut out);
    out.fill(f32::NAN);
    depthwise_plane(isa, &x, &w, bias, &g, &mut scratch, &mut out);
    for oh in 0..g.oh {
        for ow in 0..g.ow {
            let mut s = bias as f64;
            let mut mag = bias as f64;
            for kh in 0..g.kh {
                for kw in 0..g.kw {
                    let ih = (oh * g.sh + kh * g.dh) as isize - g.pt as isize;
                    let iw = (ow * g.sw + kw * g.dw) as isize - g.pl as isize;
                    if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w {
                        let p =
                            x[ih as usize * g.w + iw as usize] as f64 * w[kh * g.kw + kw] as f64;
                        s += p;
                        mag += p.abs();
                    }
                }
            }
            let got = out[oh * g.ow + ow] as f64;
            assert!(
                (got - s).abs() <= 1e-5 * (mag + 1.0),
                "{isa:?} {g:?} at ({oh},{ow}): {got} vs {s}"
            );
        }
    }
}

fn out_dim(n: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize) -> usize {
    let span = (k - 1) * d + 1;
    if n + p0 + p1 < span {
        0
    } else {
        (n + p0 + p1 - span) / s + 1
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn sgemm_packed_b_matches_f64_reference(
        m in 1usize..40, n in 1usize..80, k in 0usize..300, rs_extra in 0usize..3,
        seed in any::<u64>(),
    ) {
        for isa in available_isas() {
            check_packed_b(isa, m, n, k, rs_extra, seed);
        }
    }

    #[test]
    fn depthwise_matches_f64_reference(
        h in 1usize..20, w in 1usize..40, kh in 1usize..5, kw in 1usize..5,
        sh in 1usize..4, sw in 1usize..4, dh in 1usize..3, dw in 1usize..3,
        pads in prop::array::uniform4(0usize..3), seed in any::<u64>(),
    ) {
        let oh = out_dim(h, kh, sh, dh, pads[0], pads[2]);
        let ow = out_dim(w, kw, sw, dw, pads[1], pads[3]);
        prop_assume!(oh > 0 && ow > 0);
        let g = DepthwiseGeo { h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt: pads[0], pl: pads[1] };
        for isa in available_isas() {
            check_depthwise(isa, g, seed);
        }
    }
}

#[test]
fn sgemm_packed_b_parallel_and_large() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        for isa in available_isas() {
            check_packed_b(isa, 150, 1100, 300, 1, 5);
            check_packed_b(isa, 13, 2000, 27, 0, 6);
        }
    });
    for isa in available_isas() {
        check_packed_b(isa, 64, 1500, 27, 0, 7);
    }
}

#[test]
fn depthwise_common_shapes() {
    for isa in available_isas() {
        for (h, s, p) in [(28, 1, 1), (56, 2, 1), (7, 1, 1), (112, 2, 0), (14, 2, 1)] {
            let o = out_dim(h, 3, s, 1, p, p);
            let g = DepthwiseGeo {
                h,
                w: h,
                oh: o,
                ow: o,
                kh: 3,
                kw: 3,
                sh: s,
                sw: s,
                dh: 1,
                dw: 1,
                pt: p,
                pl: p,
            };
            check_depthwise(isa, g, h as u64);
        }
    }
}
