//! Dense convolutions on every available path (the channel-major direct kernel on
//! `avx512vnni`, `avxvnni`, `avx2`, `neon-dotprod`, `neon` and `scalar` for unit
//! W-strides, the indirect/im2col kernels otherwise) against the literal
//! reference: random batch, groups, channel counts (not multiples of 4), kernel sizes,
//! strides, asymmetric pads, dilations, per-channel weight zero points, i8 and u8
//! inputs, u8/i8/i32 outputs, extreme values, one and two threads. Bit-exact.
#![allow(missing_docs, clippy::unwrap_used)]

use edgeml_quant::*;
use ndarray::Array4;
use proptest::prelude::*;

fn bytes(n: usize, seed: u64, extreme: bool) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = (s >> 32) as u8;
            if extreme {
                if r.is_multiple_of(3) { 0 } else { 255 }
            } else {
                r
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    g: usize,
    cig: usize,
    cog: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    pads: [usize; 4],
    d: [usize; 2],
    seed: u64,
    extreme: bool,
    zw_zero: bool,
    threads: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..3, 1usize..4, 1usize..11, 1usize..19),
        (1usize..15, 1usize..40, [1usize..4, 1usize..4]),
        (
            (1usize..3, prop_oneof![3 => Just(1usize), 1 => 2usize..4]),
            [0usize..3, 0usize..3, 0usize..3, 0usize..3],
            (prop_oneof![Just(1usize), 1usize..4], 1usize..3),
        ),
        (any::<u64>(), any::<bool>(), any::<bool>(), 1usize..3),
    )
        .prop_map(
            |(
                (n, g, cig, cog),
                (h, w, k),
                ((sh, sw), pads, (dh, dw)),
                (seed, extreme, zw_zero, threads),
            )| {
                let (s, d) = ([sh, sw], [dh, dw]);
                Case {
                    n,
                    g,
                    cig,
                    cog,
                    h,
                    w,
                    k,
                    s,
                    pads,
                    d,
                    seed,
                    extreme,
                    zw_zero,
                    threads,
                }
            },
        )
}

fn check<TX: QElem, TW: QElem>(isa: Isa, c: &Case, conv: impl Fn(&[u8]) -> (Vec<TX>, Vec<TW>)) {
    let (ci, co) = (c.g * c.cig, c.g * c.cog);
    let xb = bytes(c.n * ci * c.h * c.w, c.seed, c.extreme);
    let wb = bytes(co * c.cig * c.k[0] * c.k[1], c.seed ^ 7, c.extreme);
    let zb = bytes(co + 1, c.seed ^ 9, false);
    let (xv, _) = conv(&xb);
    let (_, wv) = conv(&wb);
    let (zxv, zwv) = conv(&zb);
    let zx = zxv[co];
    let zw: Vec<TW> = if c.zw_zero {
        let (_, z) = conv(&vec![if TW::SIGNED { 0 } else { 128 }; co]);
        z
    } else {
        zwv[..co].to_vec()
    };
    let x = Array4::from_shape_vec((c.n, ci, c.h, c.w), xv).unwrap();
    let wt = Array4::from_shape_vec((co, c.cig, c.k[0], c.k[1]), wv).unwrap();
    let p = ConvParams {
        group: c.g,
        strides: c.s,
        pads: c.pads,
        dilations: c.d,
    };
    let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, isa).unwrap();
    // The one refusal expected: a dilated kernel larger than the padded input.
    let span = |k: usize, d: usize| d * (k - 1) + 1;
    let ph = c.h + c.pads[0] + c.pads[2];
    let pw = c.w + c.pads[1] + c.pads[3];
    let (oh, ow) = match pc.output_hw(c.h, c.w) {
        Ok(hw) => hw,
        Err(e) => {
            assert!(
                ph < span(c.k[0], c.d[0]) || pw < span(c.k[1], c.d[1]),
                "{isa}: output_hw refused a kernel that fits: {e} {c:?}"
            );
            assert_eq!(
                e.kind(),
                edgeml_core::ErrorKind::ShapeMismatch,
                "{isa}: {e}"
            );
            return;
        }
    };
    let want = reference::conv_i32(x.view(), zx, wt.view(), &zw, &p);
    let opts = GemmOptions { threads: c.threads };
    let mut y = Array4::zeros((c.n, co, oh, ow));
    conv_integer(x.view(), zx, &pc, y.view_mut(), &opts).unwrap();
    assert_eq!(y, want, "{isa} conv_integer {c:?}");
    let mult: Vec<f32> = (0..co).map(|i| 0.0007 * (1 + i % 5) as f32).collect();
    let bias: Vec<i32> = (0..co as i32).map(|i| i * 997 - 5000).collect();
    let rq = Requant {
        multipliers: &mult,
        zero_point: 7,
        bias: Some(&bias),
        activation: Activation::None,
    };
    let mut q = Array4::<u8>::zeros((c.n, co, oh, ow));
    qlinear_conv(x.view(), zx, &pc, &rq, q.view_mut(), &opts).unwrap();
    let wantq = ndarray::Zip::indexed(&want)
        .map_collect(|(_, o, _, _), &v| reference::requant(v, bias[o], mult[o], 7, 0, 255) as u8);
    assert_eq!(q, wantq, "{isa} qlinear_conv u8 {c:?}");
    let rq = Requant {
        zero_point: -20,
        activation: Activation::Relu,
        ..rq
    };
    let mut q = Array4::<i8>::zeros((c.n, co, oh, ow));
    qlinear_conv(x.view(), zx, &pc, &rq, q.view_mut(), &opts).unwrap();
    let wantq = ndarray::Zip::indexed(&want).map_collect(|(_, o, _, _), &v| {
        reference::requant(v, bias[o], mult[o], -20, -20, 127) as i8
    });
    assert_eq!(q, wantq, "{isa} qlinear_conv i8 {c:?}");
}

fn u8i8(b: &[u8]) -> (Vec<u8>, Vec<i8>) {
    (b.to_vec(), b.iter().map(|&v| v as i8).collect())
}
fn i8u8(b: &[u8]) -> (Vec<i8>, Vec<u8>) {
    (b.iter().map(|&v| v as i8).collect(), b.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn dense_conv_every_path(c in case()) {
        for isa in Isa::available() {
            check(isa, &c, u8i8);
            check(isa, &c, i8u8);
        }
    }
}

/// The benchmark shapes' structure at a size that crosses tiles and output rows:
/// 3×3 pad 1 (flat tiles with the two garbage columns), 1×1 (one contiguous plane),
/// stride 2 vertically (row tiles), 40 output channels (a partial 8-channel block),
/// stride 2 horizontally (the image stored as two column phases).
#[test]
fn direct_tile_edges() {
    let cases = [
        ([3, 3], [1, 1], [1, 1, 1, 1], 16, 40, 23, 37),
        ([1, 1], [1, 1], [0, 0, 0, 0], 12, 40, 9, 41),
        ([3, 3], [2, 1], [1, 2, 0, 1], 8, 17, 19, 70),
        ([3, 1], [1, 1], [2, 0, 2, 0], 5, 9, 33, 3),
        // Horizontal stride 2: the two column phases (odd and even padded widths).
        ([3, 3], [2, 2], [1, 1, 1, 1], 5, 9, 17, 29),
        ([3, 3], [1, 2], [0, 1, 2, 0], 6, 3, 13, 30),
        ([1, 1], [2, 2], [0, 0, 0, 0], 8, 9, 14, 15),
        ([7, 7], [2, 2], [3, 3, 3, 3], 3, 9, 21, 22),
    ];
    for (k, s, pads, cig, cog, h, w) in cases {
        let c = Case {
            n: 2,
            g: 1,
            cig,
            cog,
            h,
            w,
            k,
            s,
            pads,
            d: [1, 1],
            seed: 42,
            extreme: false,
            zw_zero: false,
            threads: 2,
        };
        for isa in Isa::available() {
            check(isa, &c, u8i8);
            check(
                isa,
                &Case {
                    extreme: true,
                    zw_zero: true,
                    threads: 1,
                    ..c.clone()
                },
                i8u8,
            );
        }
    }
}

/// Zero input channels (an empty reduction) and a single output pixel: every path
/// gives the bias-only result without panicking.
#[test]
fn empty_reduction_and_single_pixel() {
    for isa in Isa::available() {
        let x = Array4::<u8>::zeros((1, 0, 6, 7));
        let wt = Array4::<i8>::zeros((5, 0, 3, 3));
        let p = ConvParams {
            pads: [1, 1, 1, 1],
            ..ConvParams::default()
        };
        let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerTensor(3), p, isa).unwrap();
        let mut y = Array4::from_elem((1, 5, 6, 7), 9i32);
        conv_integer(x.view(), 1, &pc, y.view_mut(), &GemmOptions::default()).unwrap();
        assert!(y.iter().all(|&v| v == 0), "{isa}");
        let c = Case {
            n: 1,
            g: 1,
            cig: 5,
            cog: 3,
            h: 1,
            w: 1,
            k: [1, 1],
            s: [1, 1],
            pads: [0; 4],
            d: [1, 1],
            seed: 3,
            extreme: true,
            zw_zero: false,
            threads: 2,
        };
        check(isa, &c, u8i8);
    }
}

/// One batch item of a dense convolution on several threads: kernel, strides, pads,
/// dilations, input and output channels, height and width.
type Row = (
    [usize; 2],
    [usize; 2],
    [usize; 4],
    [usize; 2],
    usize,
    usize,
    usize,
    usize,
);

fn threaded(row: Row, threads: usize, zw_zero: bool, seed: u64) -> Case {
    let (k, s, pads, d, cig, cog, h, w) = row;
    Case {
        n: 1,
        g: 1,
        cig,
        cog,
        h,
        w,
        k,
        s,
        pads,
        d,
        seed,
        extreme: false,
        zw_zero,
        threads,
    }
}

/// Planes of at least 768 pixels with symmetric weights and enough work to split (every
/// case), on two and three threads: the direct kernel cuts the output rows into one or
/// two bands per thread (both counts occur below) and builds each band's padded rows
/// (halo included) on its own. Bands that start in the top padding, end in the bottom
/// padding or lie wholly inside a large bottom pad; stride 2 and dilation 2 vertically,
/// stride 2 and dilation 2 horizontally.
#[test]
fn direct_row_bands() {
    let cases: [Row; 9] = [
        ([3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 5, 9, 28, 28),
        ([1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 16, 24, 28, 28),
        ([3, 3], [2, 1], [1, 0, 2, 1], [1, 1], 3, 24, 49, 33),
        ([3, 1], [1, 1], [0, 0, 9, 0], [2, 1], 8, 24, 16, 40),
        ([5, 3], [1, 1], [4, 1, 4, 1], [1, 1], 2, 24, 25, 31),
        ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 3, 24, 56, 56),
        ([1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 16, 24, 56, 56),
        ([3, 3], [1, 2], [1, 0, 1, 1], [1, 2], 2, 24, 28, 61),
        ([3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 8, 24, 40, 20),
    ];
    for (i, row) in cases.into_iter().enumerate() {
        // Two threads and, on alternate cases, three.
        let threads: &[usize] = if i % 2 == 1 { &[2, 3] } else { &[2] };
        for &threads in threads {
            let c = threaded(row, threads, true, 11);
            for isa in Isa::available() {
                check(isa, &c, u8i8);
                check(
                    isa,
                    &Case {
                        extreme: true,
                        ..c.clone()
                    },
                    i8u8,
                );
            }
        }
    }
}

/// Short reductions (at most 8 k-quads) on planes too small for row bands, on two and
/// three threads: the direct kernel's (tile, block) units run block-major and split
/// over the threads; with per-channel weight zero points on three threads.
#[test]
fn direct_block_major_units() {
    let cases: [Row; 3] = [
        ([1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 32, 40, 20, 20),
        ([1, 3], [1, 1], [0, 1, 0, 0], [1, 1], 8, 40, 24, 22),
        ([3, 1], [2, 1], [1, 0, 1, 0], [1, 1], 5, 33, 30, 17),
    ];
    for row in cases {
        for threads in [2, 3] {
            let c = threaded(row, threads, threads == 2, 5);
            for isa in Isa::available() {
                check(isa, &c, u8i8);
            }
        }
    }
}
