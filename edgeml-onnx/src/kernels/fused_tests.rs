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

/// Every ISA's plane is bit-identical to the portable one (same operations, same
/// order), NaN and ±Inf in the input, the weights and the bias included.
fn check_depthwise_bits(g: DepthwiseGeo, seed: u64, specials: &[(usize, usize)]) {
    let mut x = data(g.h * g.w, seed);
    let mut w = data(g.kh * g.kw, seed + 1);
    let mut bias = 0.5;
    let vals = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
    let (nx, nw) = (x.len(), w.len());
    for &(pos, v) in specials {
        match pos % 3 {
            0 => x[pos / 3 % nx] = vals[v % 4],
            1 => w[pos / 3 % nw] = vals[v % 4],
            _ => bias = vals[v % 4],
        }
    }
    let mut want = vec![0.0; g.oh * g.ow];
    depthwise_plane(
        Isa::Scalar,
        &x,
        &w,
        bias,
        &g,
        &mut DepthwiseScratch::default(),
        &mut want,
    );
    for isa in available_isas() {
        let mut got = vec![f32::NAN; g.oh * g.ow];
        depthwise_plane(
            isa,
            &x,
            &w,
            bias,
            &g,
            &mut DepthwiseScratch::default(),
            &mut got,
        );
        for (q, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{isa:?} {g:?} at {q}: {a} vs {b}"
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
    fn depthwise_isas_bit_identical_with_specials(
        h in 1usize..20, w in 1usize..40, kh in 1usize..7, kw in 1usize..7,
        stride in 1usize..3, pads in prop::array::uniform4(0usize..3),
        specials in prop::collection::vec((0usize..3000, 0usize..4), 0..4),
        seed in any::<u64>(),
    ) {
        let oh = out_dim(h, kh, stride, 1, pads[0], pads[2]);
        let ow = out_dim(w, kw, stride, 1, pads[1], pads[3]);
        prop_assume!(oh > 0 && ow > 0);
        let g = DepthwiseGeo {
            h, w, oh, ow, kh, kw, sh: stride, sw: stride, dh: 1, dw: 1, pt: pads[0], pl: pads[1],
        };
        check_depthwise_bits(g, seed, &specials);
    }

    /// The square 3×3 and 5×5 kernels the direct AVX-512 path specialises, every
    /// stride pair, asymmetric pads up to `k − 1`, planes from 1×1 up to rows several
    /// register blocks wide.
    #[test]
    fn depthwise_square_kernels_all_paths(
        k in prop::sample::select(vec![3usize, 5]), sh in 1usize..3, sw in 1usize..3,
        h in 1usize..13,
        w in prop::sample::select(vec![1usize, 2, 3, 5, 7, 15, 16, 17, 31, 33, 48, 57, 70, 100]),
        pads in prop::array::uniform4(0usize..5),
        specials in prop::collection::vec((0usize..3000, 0usize..4), 0..3),
        seed in any::<u64>(),
    ) {
        let pads = pads.map(|p| p % k);
        let oh = out_dim(h, k, sh, 1, pads[0], pads[2]);
        let ow = out_dim(w, k, sw, 1, pads[1], pads[3]);
        prop_assume!(oh > 0 && ow > 0);
        let g = DepthwiseGeo {
            h, w, oh, ow, kh: k, kw: k, sh, sw, dh: 1, dw: 1, pt: pads[0], pl: pads[1],
        };
        check_depthwise_bits(g, seed, &specials);
        for isa in available_isas() {
            check_depthwise(isa, g, seed);
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
        for (h, k, s, p) in [
            (28, 3, 1, 1),
            (56, 3, 2, 1),
            (7, 3, 1, 1),
            (112, 3, 2, 0),
            (14, 3, 2, 1),
            (56, 5, 2, 2),
            (28, 5, 1, 2),
            (7, 5, 1, 2),
            (1, 3, 1, 1),
            (2, 5, 1, 2),
        ] {
            let o = out_dim(h, k, s, 1, p, p);
            let g = DepthwiseGeo {
                h,
                w: h,
                oh: o,
                ow: o,
                kh: k,
                kw: k,
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

/// The remapped driver with the vector bias/clamp epilogue: `B` has `pitch`-wide grid
/// rows of which `width` columns are kept; checked against f64 on the kept columns.
#[allow(clippy::too_many_arguments)]
fn check_mapped(
    isa: Isa,
    m: usize,
    rows: usize,
    pitch: usize,
    width: usize,
    k: usize,
    lo: f32,
    hi: f32,
    seed: u64,
) {
    let n_log = rows * pitch;
    let n = rows * width;
    let av = data(m * k, seed);
    let bv = data(k.max(1) * n_log, seed + 1);
    let bias = data(m, seed + 2);
    let a = MatRef::row_major(&av, m, k).unwrap();
    let pa = PackedA::pack(isa, a);
    let rhs = RowsB::new(&bv, k, n_log, n_log).unwrap();
    let map = ColMap { pitch, width };
    let bc = BiasClamp {
        bias: Some(&bias),
        lo,
        hi,
    };
    for lhs in [Lhs::View(a), Lhs::Packed(&pa)] {
        let mut c = vec![f32::NAN; m * n];
        sgemm_packed_b_mapped(isa, lhs, &rhs, &mut c, n, None, Some(map), Some(bc)).unwrap();
        for i in 0..m {
            for r in 0..rows {
                for q in 0..width {
                    let j = r * pitch + q;
                    let mut s = bias[i] as f64;
                    let mut mag = s.abs();
                    for kk in 0..k {
                        let p = av[i * k + kk] as f64 * bv[kk * n_log + j] as f64;
                        s += p;
                        mag += p.abs();
                    }
                    let want = s.clamp(lo as f64, hi as f64);
                    let got = c[i * n + r * width + q] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (mag + 1.0),
                        "{isa:?} m{m} k{k} grid {rows}x{pitch}->{width} at ({i},{r},{q}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn sgemm_packed_b_mapped_matches_f64_reference(
        m in 1usize..30, rows in 1usize..9, pitch in 1usize..40, cut in 0usize..4,
        k in 0usize..100, relu in any::<bool>(), seed in any::<u64>(),
    ) {
        let width = pitch.saturating_sub(cut).max(1);
        let (lo, hi) = if relu { (0.0, f32::INFINITY) } else { (-0.5, 0.75) };
        for isa in available_isas() {
            check_mapped(isa, m, rows, pitch, width, k, lo, hi, seed);
        }
    }
}

#[test]
fn sgemm_packed_b_deep_k_and_mapped_parallel() {
    // Depth beyond the largest kc (several k-blocks), serial and in a pool.
    for isa in available_isas() {
        check_packed_b(isa, 20, 100, 1700, 0, 8);
        check_mapped(
            isa,
            70,
            5,
            33,
            30,
            1000,
            f32::NEG_INFINITY,
            f32::INFINITY,
            9,
        );
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        for isa in available_isas() {
            check_packed_b(isa, 30, 700, 900, 1, 10);
            check_mapped(isa, 150, 20, 58, 56, 144, 0.0, f32::INFINITY, 11);
        }
    });
}

#[test]
fn mapped_rejects_bad_maps_and_short_bias() {
    let av = data(4 * 3, 1);
    let bv = data(3 * 8, 2);
    let a = MatRef::row_major(&av, 4, 3).unwrap();
    let rhs = RowsB::new(&bv, 3, 8, 8).unwrap();
    let mut c = vec![0.0f32; 32];
    let isa = best_isa();
    let bad = ColMap { pitch: 4, width: 5 };
    assert!(
        sgemm_packed_b_mapped(isa, Lhs::View(a), &rhs, &mut c, 8, None, Some(bad), None).is_err()
    );
    let short = [1.0f32; 2];
    let bc = BiasClamp {
        bias: Some(&short),
        lo: 0.0,
        hi: 1.0,
    };
    assert!(
        sgemm_packed_b_mapped(isa, Lhs::View(a), &rhs, &mut c, 8, None, None, Some(bc)).is_err()
    );
}

/// `B` as rows at given offsets of one buffer (overlapping, like a convolution's
/// shifted phase planes), offered to the driver in place or only through `pack`.
struct OffsetRows {
    buf: Vec<f32>,
    offs: Vec<usize>,
    cols: usize,
    in_place: bool,
}

impl PackB for OffsetRows {
    fn rows(&self) -> usize {
        self.offs.len()
    }

    fn cols(&self) -> usize {
        self.cols
    }

    fn pack(&self, k0: usize, kcur: usize, j0: usize, jn: usize, nr: usize, out: &mut [f32]) {
        for (p, panel) in out.chunks_exact_mut(nr * kcur).enumerate() {
            for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                for (q, v) in row.iter_mut().enumerate() {
                    let col = p * nr + q;
                    *v = if col < jn {
                        self.buf[self.offs[k0 + kk] + j0 + col]
                    } else {
                        0.0
                    };
                }
            }
        }
    }

    fn in_place_rows(&self) -> Option<(&[f32], &[usize])> {
        self.in_place.then_some((&self.buf[..], &self.offs[..]))
    }
}

/// Reading `B` in place gives the packed path's bits: overlapping rows, partial tiles
/// in both directions, several k-blocks, with and without a column map, 1 and 3
/// threads, on every ISA here (those without an in-place kernel pack either way).
#[test]
fn in_place_rows_give_the_packed_bits() {
    let run = |isa: Isa, m: usize, rows: usize, pitch: usize, width: usize, k: usize, seed: u64| {
        let n_log = rows * pitch;
        let offs: Vec<usize> = (0..k)
            .map(|kk| (kk % 3) + (kk / 3) * (n_log / 2 + 5))
            .collect();
        let len = offs.iter().max().map_or(0, |&o| o + n_log);
        let av = data(m * k, seed);
        let bias = data(m, seed + 2);
        let pa = PackedA::pack(isa, MatRef::row_major(&av, m, k).unwrap());
        let bc = BiasClamp {
            bias: Some(&bias),
            lo: -0.5,
            hi: f32::INFINITY,
        };
        let mut outs = Vec::new();
        for in_place in [false, true] {
            let rhs = OffsetRows {
                buf: data(len, seed + 1),
                offs: offs.clone(),
                cols: n_log,
                in_place,
            };
            let (map, n) = if width < pitch {
                (Some(ColMap { pitch, width }), rows * width)
            } else {
                (None, n_log)
            };
            let mut c = vec![f32::NAN; m * n];
            sgemm_packed_b_mapped(isa, Lhs::Packed(&pa), &rhs, &mut c, n, None, map, Some(bc))
                .unwrap();
            outs.push(c);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&outs[0]),
            bits(&outs[1]),
            "{isa:?} m{m} grid {rows}x{pitch}->{width} k{k}"
        );
    };
    let cases = [
        (13, 3, 37, 37, 27),
        (64, 5, 42, 40, 576),
        (20, 2, 11, 10, 1000),
        (7, 1, 70, 70, 9),
        (25, 4, 33, 30, 144),
        // 16 and 32 rows: partial row tiles of 4 and 2 rows on AVX2.
        (16, 3, 81, 80, 27),
        (32, 2, 22, 20, 288),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for isa in available_isas() {
        for (seed, &(m, rows, pitch, width, k)) in cases.iter().enumerate() {
            run(isa, m, rows, pitch, width, k, seed as u64);
            pool.install(|| run(isa, m, rows, pitch, width, k, 100 + seed as u64));
        }
    }
}
