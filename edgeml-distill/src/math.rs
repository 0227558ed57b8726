//! A vectorizable `exp` for the hot loops, and the run-time ISA dispatch they run under.

/// Runs an [`IsaBody`] compiled for the CPU's best ISA: `edgeml_onnx`'s dispatch
/// (AVX-512F, AVX2+FMA or NEON, picked at run time, `EDGEML_KERNELS` honoured).
#[cfg(feature = "onnx")]
pub(crate) use edgeml_onnx::kernels::{IsaBody, on_best_isa};

/// A computation for [`on_best_isa`] (the same shape as `edgeml_onnx`'s).
#[cfg(not(feature = "onnx"))]
pub(crate) trait IsaBody {
    /// What `run` returns.
    type Output;
    /// The computation.
    fn run(self) -> Self::Output;
}

/// Without the `onnx` feature: `body` as compiled for the build target.
#[cfg(not(feature = "onnx"))]
#[inline(always)]
pub(crate) fn on_best_isa<B: IsaBody>(body: B) -> B::Output {
    body.run()
}

/// `e^x` for `x ≤ 0` (the loops only exponentiate `z − max(z)`), written so that the
/// compiler vectorizes a loop over it: Cody–Waite range reduction `x = n·ln 2 + r`
/// and Cephes' degree-5 polynomial for `e^r` on `|r| ≤ ln2/2`, `2^n` assembled from
/// its bits. Relative error below 2e-7 on `[-87, 0]`; returns exactly 0 below -87
/// (also for `-inf`) and is not meant for `x > 0`. NaN in gives an unspecified value,
/// which is why inputs are checked before.
///
/// With `FUSED`, the reduction and the polynomial use fused multiply-adds (one
/// rounding each; about half the instructions), otherwise separate multiplies and adds.
/// [`fused`] says which one the CPU runs fast.
#[inline(always)]
pub(crate) fn exp_neg<const FUSED: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer kept in the low mantissa bits
    const MAGIC: f32 = 12_582_912.0;
    let fma = |a: f32, b: f32, c: f32| if FUSED { a.mul_add(b, c) } else { a * b + c };
    let xc = if x < -87.0 { -87.0 } else { x };
    let f = fma(xc, LOG2E, MAGIC);
    let n = f - MAGIC;
    let r = fma(-n, LN2_HI, xc);
    let r = fma(-n, LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = fma(p, r, 1.398_199_9e-3);
    p = fma(p, r, 8.333_452e-3);
    p = fma(p, r, 4.166_579_6e-2);
    p = fma(p, r, 1.666_666_5e-1);
    p = fma(p, r, 0.5);
    let y = fma(p * r, r, r) + 1.0;
    // f's bits are MAGIC's bits + n; 2^n has exponent field n + 127 (≥ 1 here)
    let scale = f32::from_bits(f.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    if x < -87.0 { 0.0 } else { y * scale }
}

/// Whether the hot loops use fused multiply-adds: when the CPU has the instruction and
/// the loops are compiled to use it (on x86-64 through [`on_best_isa`]'s AVX2+FMA and
/// AVX-512 paths, which the `onnx` feature provides; always on aarch64). Every ISA path
/// of one machine then computes the same bits (a path forced to portable code by
/// `EDGEML_KERNELS=scalar` calls `fmaf`, correct but slow); a CPU without FMA (x86-64
/// before AVX2, e.g. Atom/Celeron parts up to Tremont) runs separate multiplies and
/// adds, whose results can differ in the last bits.
pub(crate) fn fused() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (cfg!(feature = "onnx") || cfg!(target_feature = "fma"))
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        cfg!(target_feature = "fma")
    }
}

#[cfg(test)]
mod tests {
    use super::exp_neg;

    #[test]
    fn exp_neg_is_accurate_on_its_domain() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_neg::<true>(x));
            let unfused = f64::from(exp_neg::<false>(x));
            worst = worst.max((unfused - want).abs() / want);
            worst = worst.max((got - want).abs() / want);
            x += 0.000_37;
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        for e in [exp_neg::<true>, exp_neg::<false>] {
            assert_eq!(e(0.0), 1.0);
            assert_eq!(e(-88.0), 0.0);
            assert_eq!(e(f32::NEG_INFINITY), 0.0);
            assert_eq!(e(-1e30), 0.0);
        }
    }
}
