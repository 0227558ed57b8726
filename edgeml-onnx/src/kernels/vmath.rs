//! Vectorized `f32` activation functions: `exp`, `sigmoid`, `silu`, `tanh` and the
//! piecewise `hardswish`.
//!
//! Each function has one definition, a branch-free scalar twin ([`exp`], [`sigmoid`],
//! [`tanh`]) written with plain `+ − × ÷`, selects and an `f32 → i32` conversion only.
//! The slice versions ([`exp_in_place`], …) run that same code in a loop compiled for the
//! ISA picked by [`super::best_isa`] (AVX-512F, AVX2+FMA or NEON registers, by the
//! compiler's vectorizer). Rust never contracts `a·b + c` into a fused multiply-add, so
//! every ISA performs the same IEEE operations in the same order: the slice versions
//! agree with the scalar twins bit for bit on every path.
//!
//! Accuracy against `f64` (measured by the property tests over the whole finite range):
//! `exp` within 2 ulp for results ≥ `f32::MIN_POSITIVE`; `sigmoid` within 4 ulp where
//! the result is ≥ 1e-30, and ≤ 1e-30 absolute below; `tanh` within 4 ulp. onnxruntime's
//! MLAS kernels make comparable approximations (its logistic clamps the input to ±18).
//!
//! Special values: NaN gives NaN; `exp(+∞) = +∞`, `exp(−∞) = 0`; `sigmoid(±∞) = 1, 0`;
//! `tanh(±∞) = ±1`; `exp` overflows to `+∞` above `ln(f32::MAX)` and underflows to 0
//! (possibly through subnormals) below about −103.9.
#![allow(unsafe_code)]
// The polynomial coefficients are written as published (Cephes); each literal rounds to
// the f32 it names.
#![allow(clippy::excessive_precision)]

/// `log2(e)`.
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in a part exact in few bits and the rest (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Inputs are clamped to this range; outside it `exp` is 0 or overflows anyway.
const EXP_LO: f32 = -110.0;
const EXP_HI: f32 = 88.8;
/// `1.5·2²³`: adding and subtracting it rounds an `f32` below 2²² to an integer.
const ROUND: f32 = 12_582_912.0;

/// `2^n` for an integral `n` in `[−80, 64]`, built from the exponent bits. The integer
/// is read from the bits of `n + 1.5·2²³` (a bit cast, which vectorizes; `n as i32`
/// does not, because of its NaN and saturation rules). A NaN `n` gives some finite
/// power, and the NaN reaches the result through the other factor.
#[inline(always)]
fn pow2(n: f32) -> f32 {
    let i = (n + ROUND).to_bits().wrapping_sub(0x4B40_0000);
    f32::from_bits(i.wrapping_add(127) << 23)
}

/// `eˣ` (scalar twin of [`exp_in_place`]).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Clamp by selects so NaN passes through (every comparison with NaN is false).
    let c = if x < EXP_LO { EXP_LO } else { x };
    let c = if c > EXP_HI { EXP_HI } else { c };
    // x = n·ln2 + r with |r| ≤ ln2/2; n rounded half to even.
    let n = (c * LOG2E + ROUND) - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    // e^r by its degree-7 Taylor-like minimax polynomial (Cephes expf coefficients).
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n in two halves so that n down to −150 and up to 128 stay representable.
    let n1 = (n * 0.5 + ROUND) - ROUND;
    let n1 = if n1 * 2.0 > n { n1 - 1.0 } else { n1 };
    let n2 = n - n1;
    p * pow2(n1) * pow2(n2)
}

/// `1 / (1 + e⁻ˣ)` (scalar twin of [`sigmoid_in_place`]).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `x · sigmoid(x)`, SiLU (scalar twin of [`silu_in_place`]).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

/// `x · max(0, min(1, x/6 + 1/2))`, ONNX `HardSwish` (scalar twin of
/// [`hardswish_in_place`]); the clamp is written as selects, so NaN gives NaN.
#[inline(always)]
pub fn hardswish(x: f32) -> f32 {
    let h = x * (1.0 / 6.0) + 0.5;
    let h = if h < 0.0 { 0.0 } else { h };
    let h = if h > 1.0 { 1.0 } else { h };
    x * h
}

/// `tanh x` (scalar twin of [`tanh_in_place`]).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let z = if x < 0.0 { -x } else { x };
    // Small |x|: odd polynomial (Cephes tanhf), no cancellation near 0.
    let s = x * x;
    let p = -5.704_988_7e-3;
    let p = p * s + 2.063_908_9e-2;
    let p = p * s - 5.373_971_6e-2;
    let p = p * s + 0.133_314_42;
    let p = p * s - 0.333_332_82;
    let small = p * s * x + x;
    // Otherwise 1 − 2/(e^{2|x|} + 1), with the sign of x.
    let big = 1.0 - 2.0 / (exp(2.0 * z) + 1.0);
    let big = if x < 0.0 { -big } else { big };
    if z < 0.625 { small } else { big }
}

/// Defines `$name(v)` (in place) and `$into(src, dst)`: `$f` over a slice, compiled for
/// the ISA the float kernels use.
macro_rules! vectorized {
    ($f:ident, $(#[$doc:meta])* $name:ident, $(#[$doc2:meta])* $into:ident) => {
        $(#[$doc])*
        pub fn $name(v: &mut [f32]) {
            #[inline(always)]
            fn body(v: &mut [f32]) {
                for x in v {
                    *x = $f(*x);
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(v: &mut [f32]) {
                    body(v)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2(v: &mut [f32]) {
                    body(v)
                }
                match super::best_isa() {
                    // SAFETY: `best_isa` returns only ISAs this CPU supports.
                    super::Isa::Avx512 => return unsafe { avx512(v) },
                    // SAFETY: as above.
                    super::Isa::Avx2 => return unsafe { avx2(v) },
                    _ => {}
                }
            }
            body(v)
        }

        $(#[$doc2])*
        ///
        /// # Panics
        /// If `src` and `dst` differ in length.
        pub fn $into(src: &[f32], dst: &mut [f32]) {
            assert_eq!(src.len(), dst.len(), "source and destination lengths differ");
            #[inline(always)]
            fn body(src: &[f32], dst: &mut [f32]) {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = $f(x);
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(src: &[f32], dst: &mut [f32]) {
                    body(src, dst)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2(src: &[f32], dst: &mut [f32]) {
                    body(src, dst)
                }
                match super::best_isa() {
                    // SAFETY: `best_isa` returns only ISAs this CPU supports.
                    super::Isa::Avx512 => return unsafe { avx512(src, dst) },
                    // SAFETY: as above.
                    super::Isa::Avx2 => return unsafe { avx2(src, dst) },
                    _ => {}
                }
            }
            body(src, dst)
        }
    };
}

vectorized!(
    exp,
    /// `eˣ` in place over `v` (bit-identical to [`exp`] per element).
    exp_in_place,
    /// `dst[i] = eˣ` of `src[i]` (bit-identical to [`exp`]).
    exp_into
);
vectorized!(
    sigmoid,
    /// `1 / (1 + e⁻ˣ)` in place over `v` (bit-identical to [`sigmoid`] per element).
    sigmoid_in_place,
    /// `dst[i] = sigmoid(src[i])` (bit-identical to [`sigmoid`]).
    sigmoid_into
);
vectorized!(
    tanh,
    /// `tanh x` in place over `v` (bit-identical to [`tanh`] per element).
    tanh_in_place,
    /// `dst[i] = tanh(src[i])` (bit-identical to [`tanh`]).
    tanh_into
);
vectorized!(
    hardswish,
    /// `x · max(0, min(1, x/6 + 1/2))` in place over `v` (bit-identical to [`hardswish`]).
    hardswish_in_place,
    /// `dst[i] = hardswish(src[i])` (bit-identical to [`hardswish`]).
    hardswish_into
);
vectorized!(
    silu,
    /// `x · sigmoid(x)` (SiLU, Swish) in place over `v` (bit-identical to [`silu`]).
    silu_in_place,
    /// `dst[i] = silu(src[i])` (bit-identical to [`silu`]).
    silu_into
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Distance in units in the last place between an `f32` and the `f64` truth.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if got == w {
            return 0.0;
        }
        let ulp = (f64::from(f32::from_bits(w.abs().to_bits() + 1)) - f64::from(w.abs())).abs();
        (f64::from(got) - want).abs() / ulp
    }

    fn sigmoid64(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    fn check_exp(x: f32) -> Result<(), String> {
        let want = f64::from(x).exp();
        let got = exp(x);
        if want > f64::from(f32::MAX) {
            return if got == f32::INFINITY {
                Ok(())
            } else {
                Err(format!("exp({x}) = {got}, want inf"))
            };
        }
        if want < f64::from(f32::MIN_POSITIVE) {
            return if (f64::from(got) - want).abs()
                <= 2.0 * f64::from(f32::MIN_POSITIVE) * f64::from(f32::EPSILON) + 1e-45
            {
                Ok(())
            } else {
                Err(format!("exp({x}) = {got:e}, want {want:e}"))
            };
        }
        let u = ulps(got, want);
        if u <= 2.0 {
            Ok(())
        } else {
            Err(format!("exp({x}) = {got:e}, want {want:e}: {u:.1} ulp"))
        }
    }

    fn check_sigmoid(x: f32) -> Result<(), String> {
        let want = sigmoid64(f64::from(x));
        let got = sigmoid(x);
        let ok = if want < 1e-30 {
            (f64::from(got) - want).abs() <= 1e-30
        } else {
            ulps(got, want) <= 4.0
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "sigmoid({x}) = {got:e}, want {want:e}: {:.1} ulp",
                ulps(got, want)
            ))
        }
    }

    fn check_tanh(x: f32) -> Result<(), String> {
        let want = f64::from(x).tanh();
        let got = tanh(x);
        let u = ulps(got, want);
        if u <= 4.0 {
            Ok(())
        } else {
            Err(format!("tanh({x}) = {got:e}, want {want:e}: {u:.1} ulp"))
        }
    }

    #[test]
    fn hardswish_against_f64() {
        let mut b = 0u32;
        while b < 0x7f80_0000 {
            for x in [f32::from_bits(b), -f32::from_bits(b)] {
                let xd = f64::from(x);
                let want = xd * (xd / 6.0 + 0.5).clamp(0.0, 1.0);
                let got = f64::from(hardswish(x));
                // Three f32 roundings (x/6, + 1/2, the product): within 4 ulp of the
                // result, or of x·2⁻²⁴ where the factor nearly cancels (x ≈ −3), or one
                // subnormal step for subnormal results.
                let tol = 4.0 * f64::from(f32::EPSILON) * (want.abs() + xd.abs() * 0.25)
                    + 2.0 * 1.401_298_5e-45;
                assert!(
                    (got - want).abs() <= tol,
                    "hardswish({x}) = {got}, want {want}"
                );
            }
            b += 9_973;
        }
        assert!(hardswish(f32::NAN).is_nan());
        assert_eq!(hardswish(f32::INFINITY), f32::INFINITY);
        assert_eq!(hardswish(-4.0), 0.0);
    }

    #[test]
    fn special_values() {
        assert!(exp(f32::NAN).is_nan());
        assert!(sigmoid(f32::NAN).is_nan());
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
    }

    #[test]
    fn dense_grid_against_f64() {
        // Every 97th f32 bit pattern of the finite range (≈ 44 M values / 97).
        let mut errs = Vec::new();
        let mut b = 0u32;
        while b < 0x7f80_0000 {
            for x in [f32::from_bits(b), -f32::from_bits(b)] {
                for r in [check_exp(x), check_sigmoid(x), check_tanh(x)] {
                    if let Err(e) = r {
                        errs.push(e);
                    }
                }
            }
            b += 9_973;
        }
        assert!(
            errs.is_empty(),
            "{} failures, first: {:?}",
            errs.len(),
            &errs[..errs.len().min(5)]
        );
    }

    proptest! {
        #[test]
        fn slices_match_scalar_twins_bit_for_bit(v in proptest::collection::vec(-120.0f32..120.0, 0..200)) {
            let check = |f: fn(&mut [f32]), g: fn(f32) -> f32| {
                let mut w = v.clone();
                f(&mut w);
                for (a, &x) in w.iter().zip(&v) {
                    prop_assert_eq!(a.to_bits(), g(x).to_bits(), "x = {}", x);
                }
                Ok(())
            };
            check(exp_in_place, exp)?;
            check(sigmoid_in_place, sigmoid)?;
            check(tanh_in_place, tanh)?;
            check(silu_in_place, silu)?;
            check(hardswish_in_place, hardswish)?;
            let mut d = vec![0.0; v.len()];
            sigmoid_into(&v, &mut d);
            for (a, &x) in d.iter().zip(&v) {
                prop_assert_eq!(a.to_bits(), sigmoid(x).to_bits());
            }
        }

        #[test]
        fn accurate_on_the_working_range(x in -30.0f32..30.0) {
            prop_assert!(check_exp(x).is_ok(), "{:?}", check_exp(x));
            prop_assert!(check_sigmoid(x).is_ok(), "{:?}", check_sigmoid(x));
            prop_assert!(check_tanh(x).is_ok(), "{:?}", check_tanh(x));
        }
    }
}
