//! Property tests: every ISA against the scalar order, bit for bit.

use super::*;
use proptest::prelude::*;

fn isas() -> Vec<Isa> {
    super::super::available_isas()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Every ISA gives the scalar path's bits (max and sum use the same order).
    #[test]
    fn simd_pool_matches_scalar(
        n in 1usize..80,
        nrows in 1usize..5,
        k in 1usize..5,
        s in 1usize..4,
        start in 0usize..3,
        max in any::<bool>(),
        seed in any::<u64>(),
        specials in any::<bool>(),
    ) {
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0;
            match (specials, state % 11) {
                (true, 0) => f32::NAN,
                (true, 1) => -0.0,
                (true, 2) => 0.0,
                (true, 3) => f32::NEG_INFINITY,
                _ => v,
            }
        };
        let data: Vec<Vec<f32>> = (0..nrows).map(|_| (0..n).map(|_| next()).collect()).collect();
        let rows: Vec<&[f32]> = data.iter().map(|r| &r[..]).collect();
        let mut want_acc = vec![0.0f32; n];
        if max {
            rows_scalar::<true>(&rows, &mut want_acc, 0);
        } else {
            rows_scalar::<false>(&rows, &mut want_acc, 0);
        }
        let outs = if n >= start + k { (n - start - k) / s + 1 } else { 0 };
        let taps = Taps { start, k, s };
        let mut want = vec![0.0f32; outs];
        if max {
            taps_scalar::<true>(&want_acc, taps, 3.0, &mut want, 0);
        } else {
            taps_scalar::<false>(&want_acc, taps, 3.0, &mut want, 0);
        }
        for isa in isas() {
            let mut acc = vec![7.0f32; n];
            pool_rows(isa, max, &rows, &mut acc);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&acc), bits(&want_acc), "rows on {:?}", isa);
            let mut got = vec![7.0f32; outs];
            pool_taps(isa, max, &acc, taps, 3.0, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "taps on {:?}", isa);
        }
    }
    /// The fused plane kernel gives the two-pass scalar bits on every row.
    #[test]
    fn fused_plane_matches_two_pass(
        h in 1usize..6,
        w in 3usize..150,
        start in 0usize..2,
        max in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut state = seed | 1;
        let x: Vec<f32> = (0..h * w).map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 13 {
                0 => f32::NAN,
                1 => -0.0,
                2 => f32::NEG_INFINITY,
                _ => ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0,
            }
        }).collect();
        if start + 2 >= w {
            return Ok(());
        }
        let len = (w - start - 3) / 2 + 1;
        // Output row r reads rows r.. up to three, fewer at the bottom, none for the last.
        let specs: Vec<RowSpec> = (0..=h)
            .map(|r| RowSpec { first: r.min(h - 1) * w, n: 3.min(h - r.min(h)), div: 2.5 })
            .collect();
        let out_w = len + 3;
        let mut want = vec![1.5f32; specs.len() * out_w];
        for (r, sp) in specs.iter().enumerate() {
            let rows: Vec<&[f32]> = (0..sp.n).map(|i| &x[sp.first + i * w..][..w]).collect();
            let mut acc = vec![0.0; w];
            pool_rows(Isa::Scalar, max, &rows, &mut acc);
            let taps = Taps { start, k: 3, s: 2 };
            pool_taps(Isa::Scalar, max, &acc, taps, sp.div, &mut want[r * out_w + 1..][..len]);
        }
        for isa in isas() {
            let mut got = vec![1.5f32; specs.len() * out_w];
            let n_out = got.len();
            if pool_planes_k3s2(isa, max, (&x, x.len()), (w, w), &specs, start, (&mut got, n_out), (out_w, 1, len)) {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(&got), bits(&want), "{:?}", isa);
            }
        }
    }
}
