//! Depthwise convolutions with rows wide enough for the register-blocked loops (16
//! outputs per block at strides 1 and 2, the stride-2 loop reading even/odd column
//! planes), on every kernel path this CPU has, against the literal reference.
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
