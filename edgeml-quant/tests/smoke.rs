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
            gemm_i32(a.view(), 3, &pb, out.view_mut(), &GemmOptions { threads: 2 }).unwrap();
            assert_eq!(out, want, "{isa} {m}x{n}x{k} 2 threads");
        }
    }
}
