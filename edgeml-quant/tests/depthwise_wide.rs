//! Depthwise convolutions with rows wide enough for the register-blocked loops (16
//! outputs per block at strides 1 and 2, the stride-2 loop reading even/odd column
//! planes), on every kernel path this CPU has, against the literal reference: the i32
//! sums, and u8/i8 outputs requantized per channel.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::*;
use ndarray::Array4;
use proptest::prelude::*;

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn depthwise_wide_rows_match_the_reference(
        c in 1usize..5, h in 1usize..7, w in 16usize..90, k in 1usize..6, s in 1usize..3,
        pd in 0usize..3, d in 1usize..3, seed: u64,
    ) {
        let x = Array4::from_shape_vec((1, c, h, w), bytes(c * h * w, seed)).unwrap();
        let wt = Array4::from_shape_vec((c, 1, k, k), bytes(c * k * k, seed ^ 9))
            .unwrap()
            .mapv(|v| v as i8);
        let zw: Vec<i8> = bytes(c, seed ^ 3).into_iter().map(|v| (v as i8) / 8).collect();
        let p = ConvParams { group: c, strides: [s, s], pads: [pd, pd + 1, pd, pd], dilations: [d, d] };
        let paths = Isa::available();
        prop_assert!(paths.contains(&Isa::Scalar));
        for isa in paths {
            let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, isa).unwrap();
            prop_assert!(pc.is_depthwise());
            let Ok((oh, ow)) = pc.output_hw(h, w) else {
                // The window does not fit this input: the reference agrees it has no output.
                prop_assert!(h + 2 * pd < (k - 1) * d + 1 || w + 2 * pd + 1 < (k - 1) * d + 1);
                continue;
            };
            let want = reference::conv_i32(x.view(), 7u8, wt.view(), &zw, &p);
            let mut y = Array4::zeros((1, c, oh, ow));
            conv_integer(x.view(), 7u8, &pc, y.view_mut(), &GemmOptions::default()).unwrap();
            prop_assert_eq!(&y, &want, "{} depthwise", isa);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Requantized u8 and i8 outputs (per-channel multipliers, bias, zero point) on every
    /// path equal the literal definition applied to the reference sums:
    /// `clamp(round_half_even(f32(acc + bias) · m) + zp)`.
    #[test]
    fn depthwise_wide_requantized_rows_match_the_definition(
        c in 1usize..5, h in 3usize..7, w in 16usize..90, k in 1usize..5, s in 1usize..3,
        pd in 0usize..2, zy in -20i32..20, seed: u64,
    ) {
        let x = Array4::from_shape_vec((1, c, h, w), bytes(c * h * w, seed)).unwrap();
        let wt = Array4::from_shape_vec((c, 1, k, k), bytes(c * k * k, seed ^ 9))
            .unwrap()
            .mapv(|v| v as i8);
        let zw = vec![0i8; c];
        let mult: Vec<f32> = (0..c).map(|i| 0.0004 + 0.0003 * i as f32).collect();
        let bias: Vec<i32> = (0..c).map(|i| 500 * i as i32 - 700).collect();
        let p = ConvParams { group: c, strides: [s, s], pads: [pd, pd, pd, pd], dilations: [1, 1] };
        let scalar = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, Isa::Scalar).unwrap();
        // The window must fit this input (the other test covers the case where it does not).
        prop_assume!(scalar.output_hw(h, w).is_ok());
        let want_i32 = reference::conv_i32(x.view(), 9u8, wt.view(), &zw, &p);
        let requant = |lo: f32, hi: f32, zp: i32| {
            let mut out = want_i32.mapv(|_| 0i32);
            for (idx, &v) in want_i32.indexed_iter() {
                let ch = idx.1;
                let f = ((v + bias[ch]) as f32 * mult[ch]).round_ties_even();
                out[idx] = (f.clamp(lo, hi) as i32) + zp;
            }
            out
        };
        for isa in Isa::available() {
            let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, isa).unwrap();
            let (oh, ow) = pc.output_hw(h, w).unwrap();
            let rq = Requant { multipliers: &mult, zero_point: zy + 128, bias: Some(&bias), activation: Activation::None };
            let mut y8 = Array4::<u8>::zeros((1, c, oh, ow));
            qlinear_conv(x.view(), 9u8, &pc, &rq, y8.view_mut(), &GemmOptions::default()).unwrap();
            let want = requant(-(zy + 128) as f32, (255 - (zy + 128)) as f32, zy + 128);
            prop_assert_eq!(y8.mapv(i32::from), want, "{} u8", isa);
            let rq = Requant { zero_point: zy, ..rq };
            let mut yi = Array4::<i8>::zeros((1, c, oh, ow));
            qlinear_conv(x.view(), 9u8, &pc, &rq, yi.view_mut(), &GemmOptions::default()).unwrap();
            let want = requant((-128 - zy) as f32, (127 - zy) as f32, zy);
            prop_assert_eq!(yi.mapv(i32::from), want, "{} i8", isa);
        }
    }
}
