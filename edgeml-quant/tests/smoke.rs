#![allow(missing_docs, clippy::unwrap_used)]
use edgeml_quant::*;
use ndarray::Array2;

#[test]
fn smoke_all_isas() {
    for &(m, n, k) in &[(1, 1, 1), (7, 33, 13), (17, 70, 64), (64, 65, 257)] {
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 17) % 256) as u8);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 13 + j * 7) % 256) as u8 as i8);
        let zb: Vec<i8> = (0..n).map(|j| (j as i32 % 7 - 3) as i8).collect();
        let want = reference::gemm_i32(a.view(), 3u8, b.view(), &zb);
        for isa in Isa::available() {
            let pb = PackedB::with_isa(b.view(), ZeroPoints::PerColumn(&zb), isa).unwrap();
            let mut out = Array2::<i32>::zeros((m, n));
            gemm_u8i8(a.view(), 3, &pb, out.view_mut()).unwrap();
            assert_eq!(out, want, "{isa} {m}x{n}x{k}");
            let mut out = Array2::<i32>::zeros((m, n));
            gemm_i32(
                a.view(),
                3,
                &pb,
                out.view_mut(),
                &GemmOptions { threads: 2 },
            )
            .unwrap();
            assert_eq!(out, want, "{isa} {m}x{n}x{k} 2 threads");
        }
    }
}

#[test]
fn smoke_conv() {
    use ndarray::Array4;
    let cases = [
        (1, 8, 8, 9, 7, 3, 1, 1, 1, 1),
        (2, 6, 6, 7, 7, 3, 3, 2, 1, 1),
        (1, 5, 5, 9, 9, 3, 5, 1, 1, 2),
        (1, 4, 4, 10, 10, 3, 4, 2, 0, 1),
        (1, 16, 32, 5, 5, 1, 1, 1, 0, 1),
    ];
    for &(n, ci, co, h, w, k, g, s, pd, d) in &cases {
        let x = Array4::from_shape_fn((n, ci, h, w), |(a, b, c, e)| {
            ((a * 7 + b * 31 + c * 17 + e * 5) % 256) as u8
        });
        let wt = Array4::from_shape_fn((co, ci / g, k, k), |(a, b, c, e)| {
            ((a * 3 + b * 11 + c * 13 + e * 29) % 256) as u8 as i8
        });
        let p = ConvParams {
            group: g,
            strides: [s, s],
            pads: [pd, pd, pd + 1, pd],
            dilations: [d, d],
        };
        let zw: Vec<i8> = (0..co).map(|j| (j as i32 % 5 - 2) as i8).collect();
        let want = reference::conv_i32(x.view(), 7u8, wt.view(), &zw, &p);
        for isa in Isa::available() {
            let pc = PackedConv::with_isa(wt.view(), ZeroPoints::PerColumn(&zw), p, isa).unwrap();
            let mut y = Array4::<i32>::zeros(want.dim());
            conv_integer(x.view(), 7u8, &pc, y.view_mut(), &GemmOptions::default()).unwrap();
            assert_eq!(y, want, "{isa} {:?}", (n, ci, co, h, w, k, g, s, pd, d));
            let mut y = Array4::<i32>::zeros(want.dim());
            conv_integer(
                x.view(),
                7u8,
                &pc,
                y.view_mut(),
                &GemmOptions { threads: 2 },
            )
            .unwrap();
            assert_eq!(y, want, "{isa} threads");
        }
    }
}
