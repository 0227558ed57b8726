//! Vectorized `f32` math and activation functions: `exp`, `expm1`, `ln`, `sigmoid`,
//! `silu`, `tanh`, `erf`, `gelu` (exact and tanh forms), `softplus`, `mish`, `elu` and
//! the piecewise `hardswish` and `hard_sigmoid`.
//!
//! Each function has one definition, a branch-free scalar twin ([`exp`], [`sigmoid`],
//! [`tanh`]) written with plain `+ − × ÷`, selects and an `f32 → i32` conversion only.
//! The slice versions ([`exp_in_place`], …) run that same code in a loop compiled for the
//! ISA picked by [`super::best_isa`] (AVX-512F, AVX2+FMA or NEON registers, by the
//! compiler's vectorizer). Rust never contracts `a·b + c` into a fused multiply-add, so
//! every ISA performs the same IEEE operations in the same order: the slice versions
//! agree with the scalar twins bit for bit on every path. Where a function asks for a
//! fused multiply-add explicitly (`mul_add`: the range reduction and polynomial of every
//! `exp`, hence `sigmoid`, `silu`, `softplus`, `mish`, `tanh` above 0.625, `expm1`; the
//! polynomials of `erf` and `gelu`), it is one correctly rounded operation on every path
//! too (the FMA instructions of AVX2, AVX-512 and NEON; `fmaf` in scalar code). `tanh`'s
//! small-argument polynomial stays unfused: fused, it ran 17% slower on AVX-512.
//!
//! Accuracy against `f64` (measured by the property tests over the whole finite range):
//! `exp` within 2 ulp for results ≥ `f32::MIN_POSITIVE`; `sigmoid` and `silu` within 4
//! ulp where the result is ≥ 1e-30 in magnitude, and ≤ 1e-30 absolute below; `tanh` within 4 ulp; `ln` 2 ulp;
//! `expm1` 3 ulp; `softplus`, `erf` and `mish` 4 ulp (`mish` where the result is
//! ≥ 1e-30); `gelu` 8 ulp, including its far negative tail, where `x/2·(1 + erf)` would
//! cancel; `gelu_tanh` 8 ulp plus a relative `|u|·2⁻²¹` from the rounding of its
//! argument `u` (for negative `x`, e.g. 2·10⁻⁵ at `x = −10`). onnxruntime's MLAS
//! kernels make comparable approximations (its logistic clamps the input to ±18, its
//! Gelu is `x/2·(1 + erf)`, which loses every digit of the tail below `x ≈ −5`).
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
    // eˣ = 2ⁿ·(1 + q), e^r by its degree-7 Taylor-like minimax polynomial.
    let (n, q) = exp_parts(x, EXP_LO);
    // 2^n in two halves so that n down to −150 and up to 128 stay representable.
    let n1 = (n * 0.5 + ROUND) - ROUND;
    let n1 = if n1 * 2.0 > n { n1 - 1.0 } else { n1 };
    let n2 = n - n1;
    (q + 1.0) * pow2(n1) * pow2(n2)
}

/// `eˣ` for the sigmoid family, where results outside the normal range do not
/// matter: the input is clamped to `[−87, 88.8]`, so `2ⁿ` is one power (one [`pow2`],
/// not [`exp`]'s two halves; `n = 128` gives `+∞`, where `eˣ` overflows anyway), and
/// the reduction and polynomial are evaluated
/// with fused multiply-adds (`mul_add`: one rounding each, the same on every ISA, since
/// AVX2, AVX-512 and NEON all have the instruction and the scalar fallback is a
/// correctly rounded `fmaf`). Below −87, `1 + eˣ` rounds to 1 anyway.
#[inline(always)]
fn exp_normal(x: f32) -> f32 {
    let c = if x < -87.0 { -87.0 } else { x };
    let c = if c > EXP_HI { EXP_HI } else { c };
    let n = c.mul_add(LOG2E, ROUND) - ROUND;
    let r = (-n).mul_add(LN2_HI, c);
    let r = (-n).mul_add(LN2_LO, r);
    let q = (poly_exp(r) * r).mul_add(r, r);
    (q + 1.0) * pow2(n)
}

/// The polynomial `P` of `eʳ ≈ 1 + r + r²·P(r)` on `|r| ≤ ln2/2` (Cephes `expf`
/// coefficients), by fused multiply-adds.
#[inline(always)]
fn poly_exp(r: f32) -> f32 {
    let p: f32 = 1.987_569_1e-4;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 0.166_666_65);
    p.mul_add(r, 0.5)
}

/// `1 / (1 + e⁻ˣ)` (scalar twin of [`sigmoid_in_place`]).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_normal(-x))
}

/// `x · sigmoid(x)`, SiLU (scalar twin of [`silu_in_place`]); the same bits as the
/// `Sigmoid` and `Mul` operators it fuses.
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

/// The reduction of [`exp`] and [`expm1`]: `(n, q)` with `eˣ = 2ⁿ·(1 + q)` for `x`
/// clamped to `[lo, EXP_HI]` by selects (so NaN passes through: every comparison with
/// NaN is false); `x = n·ln2 + r` with `|r| ≤ ln2/2`, `n` rounded half to even. It
/// passes `b = −0.0` to [`exp_parts2`]: `a + (−0.0)` is `a` for every `a` (`+0.0`
/// would turn `−0` into `+0`), so the compiler drops both additions.
#[inline(always)]
fn exp_parts(x: f32, lo: f32) -> (f32, f32) {
    let c = if x < lo { lo } else { x };
    let c = if c > EXP_HI { EXP_HI } else { c };
    exp_parts2(c, -0.0)
}

/// `(n, q)` with `e^(a + b) = 2ⁿ·(1 + q)`, for `a + b` inside `exp`'s clamp range and
/// `|b|` small: `a − n·ln2_hi` is exact (both terms within a factor of two of each
/// other), so `b` is added after the large part cancels and keeps its low bits. This is
/// how [`erfc_pos`] evaluates `e^(−z²)` without the rounding of `z²` (`a = −zₕ²`
/// exact, `b` the rest).
#[inline(always)]
fn exp_parts2(a: f32, b: f32) -> (f32, f32) {
    let n = (a + b).mul_add(LOG2E, ROUND) - ROUND;
    let r = (-n).mul_add(LN2_HI, a) + b;
    let r = (-n).mul_add(LN2_LO, r);
    (n, (poly_exp(r) * r).mul_add(r, r))
}

/// `eˣ − 1`, accurate near 0 where `exp(x) − 1` cancels: within 3 ulp of the `f64`
/// result. `−1` below −30 (where `eˣ` is under half an ulp of 1), `+∞` above
/// `ln(f32::MAX)`.
#[inline(always)]
pub fn expm1(x: f32) -> f32 {
    let (n, q) = exp_parts(x, -30.0);
    // 2ⁿ·q + (2ⁿ − 1): both terms exact or nearly so while 2ⁿ is modest; above n = 24
    // the −1 no longer matters and eˣ is built from two halves, as in `exp`.
    let t = pow2(if n > 24.0 { 24.0 } else { n });
    let small = t * q + (t - 1.0);
    let n1 = (n * 0.5 + ROUND) - ROUND;
    let big = (q + 1.0) * pow2(n1) * pow2(n - n1) - 1.0;
    let y = if n > 24.0 { big } else { small };
    if x.is_nan() { x } else { y }
}

/// Natural logarithm (Cephes `logf` reduction and polynomial): within 2 ulp of the
/// `f64` result; `ln 0 = −∞`, `ln x = NaN` for `x < 0`, `ln ∞ = ∞`; subnormal inputs
/// are scaled by 2²³ first.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits();
    // Mantissa in [0.5, 1) and the exponent that goes with it.
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let e = e as f32 - if sub { 23.0 } else { 0.0 };
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = if low { e - 1.0 } else { e };
    let m = if low { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let p = 7.037_683_6e-2;
    let p = p * m - 1.151_461e-1;
    let p = p * m + 1.167_699_9e-1;
    let p = p * m - 1.242_014_1e-1;
    let p = p * m + 1.424_932_3e-1;
    let p = p * m - 1.666_805_8e-1;
    let p = p * m + 2.000_071_5e-1;
    let p = p * m - 2.499_999_4e-1;
    let p = p * m + 3.333_333_1e-1;
    let y = p * m * z + e * LN2_LO - 0.5 * z;
    let y = m + y + e * LN2_HI;
    // Special values by selects: ∞ and NaN pass through, 0 → −∞, negatives → NaN.
    let y = if x == f32::INFINITY { x } else { y };
    let y = if x == 0.0 { f32::NEG_INFINITY } else { y };
    if x < 0.0 || x.is_nan() { f32::NAN } else { y }
}

/// `ln(1 + eˣ)`, ONNX `Softplus`, written `max(x, 0) + ln(1 + e^−|x|)` so it neither
/// overflows nor loses the small tail (`ln(1 + u)` corrected for the rounding of
/// `1 + u`): within 4 ulp of the `f64` result.
#[inline(always)]
pub fn softplus(x: f32) -> f32 {
    let a = if x < 0.0 { -x } else { x };
    let u = exp(-a);
    let w = 1.0 + u;
    // ln(1+u) ≈ ln(w) − ((w − 1) − u)/w, exact to first order in w's rounding error.
    let l = ln(w) - ((w - 1.0) - u) / w;
    let m = if x > 0.0 { x } else { 0.0 };
    let y = m + l;
    if x.is_nan() { x } else { y }
}

/// `x · tanh(softplus(x))`, ONNX `Mish`, via `tanh(ln(1 + n)) = n(n+2) / (n(n+2) + 2)`
/// with `n = eˣ` (one `exp`, no cancellation for negative `x`); `x` itself above 20,
/// where the factor is 1 in `f32`. Within 4 ulp of the `f64` result.
#[inline(always)]
pub fn mish(x: f32) -> f32 {
    let n = exp(if x > 20.0 { 20.0 } else { x });
    let a = n * (n + 2.0);
    let y = x * (a / (a + 2.0));
    // −∞ · 0 would be NaN; the limit is 0.
    let y = if x == f32::NEG_INFINITY { -0.0 } else { y };
    if x > 20.0 { x } else { y }
}

/// `erfc z` for `z ≥ 0` (and NaN): `1 − erf` by its odd series below 0.5, else the
/// Numerical Recipes `erfcc` form `t·exp(−z² + P(t))`, `t = 1/(1 + z/2)`, whose relative
/// error is below 1.2·10⁻⁷ in exact arithmetic. `−z²` is split as
/// `−zₕ² − (z − zₕ)(z + zₕ)` with `zₕ` the top 12 bits of `z`, so `zₕ²` is exact and the
/// exponent keeps full precision even where `z²` is near 100.
#[inline(always)]
fn erfc_pos(z: f32) -> f32 {
    let zc = if z > 10.5 { 10.5 } else { z };
    let zh = f32::from_bits(zc.to_bits() & 0xffff_f000);
    erfc_split(z, -(zh * zh), -((zc - zh) * (zc + zh)))
}

/// [`erfc_pos`] with `−z² = a + b` given by the caller (`a` exact, `|b|` small).
#[inline(always)]
fn erfc_split(z: f32, a: f32, b: f32) -> f32 {
    let small = 1.0 - erf_small(z);
    let t = 1.0 / (1.0 + 0.5 * z);
    let p: f32 = 0.170_872_77;
    let p = p.mul_add(t, -0.822_152_23);
    let p = p.mul_add(t, 1.488_515_87);
    let p = p.mul_add(t, -1.135_203_98);
    let p = p.mul_add(t, 0.278_868_07);
    let p = p.mul_add(t, -0.186_288_06);
    let p = p.mul_add(t, 0.096_784_18);
    let p = p.mul_add(t, 0.374_091_96);
    let p = p.mul_add(t, 1.000_023_68);
    let p = p.mul_add(t, -1.265_512_23);
    let (n, q) = exp_parts2(a, p + b);
    // 2ⁿ in two halves: the result goes down to the subnormals.
    let n1 = (n * 0.5 + ROUND) - ROUND;
    let big = t * ((q + 1.0) * pow2(n1) * pow2(n - n1));
    if z < 0.5 { small } else { big }
}

/// `erf x` for `|x| < 0.5` by its Maclaurin series (terms through x¹³).
#[inline(always)]
fn erf_small(x: f32) -> f32 {
    let s = x * x;
    let p: f32 = 1.0 / 9360.0;
    let p = p.mul_add(s, -1.0 / 1320.0);
    let p = p.mul_add(s, 1.0 / 216.0);
    let p = p.mul_add(s, -1.0 / 42.0);
    let p = p.mul_add(s, 1.0 / 10.0);
    let p = p.mul_add(s, -1.0 / 3.0);
    let p = p.mul_add(s, 1.0);
    p * x * std::f32::consts::FRAC_2_SQRT_PI
}

/// The error function: within 4 ulp of the `f64` result where `|erf x| ≥ 10⁻³⁰`
/// (absolute error below 10⁻³⁰ nearer 0 is not reached: the series is used there).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = if x < 0.0 { -x } else { x };
    let big = 1.0 - erfc_pos(z);
    let big = if x < 0.0 { -big } else { big };
    if z < 0.5 { erf_small(x) } else { big }
}

/// `x · Φ(x) = x/2 · (1 + erf(x/√2))`, ONNX `Gelu` (`approximate = "none"`); for
/// negative `x` written `x/2 · erfc(|x|/√2)`, so the tail keeps its relative accuracy
/// where `1 + erf` would cancel.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let ax = if x < 0.0 { -x } else { x };
    let z = ax * std::f32::consts::FRAC_1_SQRT_2;
    // −z² = −x²/2 split on x's top 12 bits (not on the rounded z): exact to f32 precision.
    let xc = if ax > 14.9 { 14.9 } else { ax };
    let xh = f32::from_bits(xc.to_bits() & 0xffff_f000);
    let c = erfc_split(z, -0.5 * (xh * xh), -0.5 * ((xc - xh) * (xc + xh)));
    let phi = if x < 0.0 { c } else { 2.0 - c };
    // −∞ · 0 would be NaN; the limit is 0.
    if x == f32::NEG_INFINITY {
        -0.0
    } else {
        0.5 * x * phi
    }
}

/// `x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))`, ONNX `Gelu` (`approximate = "tanh"`),
/// computed as `x · sigmoid(2u)` (the same function without the cancellation of
/// `1 + tanh` for negative `x`).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    // 2·√(2/π)
    const C: f32 = 1.595_769_1;
    let u = C * (x + 0.044_715 * x * x * x);
    // −∞ · 0 would be NaN; the limit is 0.
    if x == f32::NEG_INFINITY {
        -0.0
    } else {
        x * sigmoid(u)
    }
}

/// `α·(eˣ − 1)` for `x < 0`, else `x` (ONNX `Elu`; NaN gives NaN).
#[inline(always)]
pub fn elu(x: f32, alpha: f32) -> f32 {
    if x < 0.0 { alpha * expm1(x) } else { x }
}

/// `max(0, min(1, α·x + β))` (ONNX `HardSigmoid`; the clamp by selects, NaN gives NaN).
#[inline(always)]
pub fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    let h = alpha * x + beta;
    let h = if h < 0.0 { 0.0 } else { h };
    if h > 1.0 { 1.0 } else { h }
}

/// `α·(eˣ − 1)·γ` for `x ≤ 0`, else `γ·x` (ONNX `Selu`; NaN gives NaN).
#[inline(always)]
pub fn selu(x: f32, alpha: f32, gamma: f32) -> f32 {
    if x <= 0.0 {
        (gamma * alpha) * expm1(x)
    } else {
        gamma * x
    }
}

/// `max(0, x) + min(0, α·(e^(x/α) − 1))` (ONNX `Celu`; NaN gives NaN).
#[inline(always)]
pub fn celu(x: f32, alpha: f32) -> f32 {
    let pos = if x > 0.0 { x } else { 0.0 };
    let neg = alpha * expm1(x / alpha);
    let neg = if neg < 0.0 { neg } else { 0.0 };
    if x.is_nan() { x } else { pos + neg }
}

/// `α·x` for `x < 0`, else `x` (ONNX `LeakyRelu`; exact; NaN gives NaN).
#[inline(always)]
pub fn leaky_relu(x: f32, alpha: f32) -> f32 {
    if x < 0.0 { alpha * x } else { x }
}

/// `x` for `x > α`, else 0 (ONNX `ThresholdedRelu`).
#[inline(always)]
pub fn thresholded_relu(x: f32, alpha: f32) -> f32 {
    if x > alpha { x } else { 0.0 }
}

/// Runs the block as a function of the listed variables, compiled for the ISA the float
/// kernels use (AVX-512F, AVX2+FMA, or the target's default, e.g. NEON). The block is
/// expanded in place, so whatever it calls with `#[inline(always)]` is inlined and
/// vectorized for that ISA.
macro_rules! on_best_isa {
    (($($a:ident: $t:ty),*) $body:block) => {{
        #[inline(always)]
        fn body($($a: $t),*) $body
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            fn avx512($($a: $t),*) {
                body($($a),*)
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($a: $t),*) {
                body($($a),*)
            }
            match super::best_isa() {
                // SAFETY: `best_isa` returns only ISAs this CPU supports.
                super::Isa::Avx512 => return unsafe { avx512($($a),*) },
                // SAFETY: as above.
                super::Isa::Avx2 => return unsafe { avx2($($a),*) },
                _ => {}
            }
        }
        body($($a),*)
    }};
}

/// Defines `pub fn $name(src, dst, params…)`: `dst[i] = $e` with `$x = src[i]`, on the
/// float kernels' ISA ([`on_best_isa`]).
macro_rules! slice_map {
    ($(#[$doc:meta])* $name:ident ($($p:ident: $t:ty),*) |$x:ident| $e:expr) => {
        $(#[$doc])*
        ///
        /// # Panics
        /// If `src` and `dst` differ in length.
        pub fn $name(src: &[f32], dst: &mut [f32] $(, $p: $t)*) {
            assert_eq!(src.len(), dst.len(), "source and destination lengths differ");
            on_best_isa!((src: &[f32], dst: &mut [f32] $(, $p: $t)*) {
                for (d, &$x) in dst.iter_mut().zip(src) {
                    *d = $e;
                }
            })
        }
    };
}

slice_map!(
    /// `dst[i] = ln(src[i])` (bit-identical to [`ln`]).
    ln_into() |x| ln(x)
);
slice_map!(
    /// `dst[i] = expm1(src[i])` (bit-identical to [`expm1`]).
    expm1_into() |x| expm1(x)
);
slice_map!(
    /// `dst[i] = softplus(src[i])` (bit-identical to [`softplus`]).
    softplus_into() |x| softplus(x)
);
slice_map!(
    /// `dst[i] = mish(src[i])` (bit-identical to [`mish`]).
    mish_into() |x| mish(x)
);
slice_map!(
    /// `dst[i] = erf(src[i])` (bit-identical to [`erf`]).
    erf_into() |x| erf(x)
);
slice_map!(
    /// `dst[i] = gelu(src[i])` (bit-identical to [`gelu`]).
    gelu_into() |x| gelu(x)
);
slice_map!(
    /// `dst[i] = gelu_tanh(src[i])` (bit-identical to [`gelu_tanh`]).
    gelu_tanh_into() |x| gelu_tanh(x)
);
slice_map!(
    /// `dst[i] = elu(src[i], alpha)` (bit-identical to [`elu`]).
    elu_into(alpha: f32) |x| elu(x, alpha)
);
slice_map!(
    /// `dst[i] = selu(src[i], alpha, gamma)` (bit-identical to [`selu`]).
    selu_into(alpha: f32, gamma: f32) |x| selu(x, alpha, gamma)
);
slice_map!(
    /// `dst[i] = celu(src[i], alpha)` (bit-identical to [`celu`]).
    celu_into(alpha: f32) |x| celu(x, alpha)
);
slice_map!(
    /// `dst[i] = hard_sigmoid(src[i], alpha, beta)` (bit-identical to [`hard_sigmoid`]).
    hard_sigmoid_into(alpha: f32, beta: f32) |x| hard_sigmoid(x, alpha, beta)
);
slice_map!(
    /// `dst[i] = leaky_relu(src[i], alpha)` (exact).
    leaky_relu_into(alpha: f32) |x| leaky_relu(x, alpha)
);
slice_map!(
    /// `dst[i] = thresholded_relu(src[i], alpha)` (exact).
    thresholded_relu_into(alpha: f32) |x| thresholded_relu(x, alpha)
);
slice_map!(
    /// `dst[i] = √src[i]` (correctly rounded).
    sqrt_into() |x| x.sqrt()
);
slice_map!(
    /// `dst[i] = 1 / src[i]` (correctly rounded).
    reciprocal_into() |x| 1.0 / x
);
slice_map!(
    /// `dst[i] = ⌊src[i]⌋`.
    floor_into() |x| x.floor()
);
slice_map!(
    /// `dst[i] = ⌈src[i]⌉`.
    ceil_into() |x| x.ceil()
);
slice_map!(
    /// `dst[i] = src[i]` rounded to the nearest integer, ties to even.
    round_into() |x| x.round_ties_even()
);

/// Defines `$name(v)` (in place) and `$into(src, dst)`: `$f` over a slice, on the
/// float kernels' ISA ([`on_best_isa`]).
macro_rules! vectorized {
    ($f:ident, $(#[$doc:meta])* $name:ident, $(#[$doc2:meta])* $into:ident) => {
        $(#[$doc])*
        pub fn $name(v: &mut [f32]) {
            on_best_isa!((v: &mut [f32]) {
                for x in v {
                    *x = $f(*x);
                }
            })
        }

        slice_map!($(#[$doc2])* $into() |x| $f(x));
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

    /// `got` within 4 ulp of `want`, or within 1e-30 absolute where `|want| < 1e-30`
    /// (the bound of the sigmoid family).
    fn within_4_ulp_or_tiny(name: &str, x: f32, got: f32, want: f64) -> Result<(), String> {
        let ok = if want.abs() < 1e-30 {
            (f64::from(got) - want).abs() <= 1e-30
        } else {
            ulps(got, want) <= 4.0
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{name}({x}) = {got:e}, want {want:e}: {:.1} ulp",
                ulps(got, want)
            ))
        }
    }

    fn check_sigmoid(x: f32) -> Result<(), String> {
        within_4_ulp_or_tiny("sigmoid", x, sigmoid(x), sigmoid64(f64::from(x)))
    }

    fn check_silu(x: f32) -> Result<(), String> {
        let want = f64::from(x) * sigmoid64(f64::from(x));
        within_4_ulp_or_tiny("silu", x, silu(x), want)
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

    /// `erf` in `f64` to about 1e-15 relative: the positive series
    /// `2/√π·e^(−x²)·Σ 2ⁿx²ⁿ⁺¹/(2n+1)!!` below 3, the continued fraction of `erfc` above.
    fn erf64(x: f64) -> f64 {
        let z = x.abs();
        let v = if z < 3.0 {
            erf64_series(z)
        } else {
            1.0 - erfc64_cf(z)
        };
        if x < 0.0 { -v } else { v }
    }

    fn erf64_series(z: f64) -> f64 {
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term > sum * 1e-18 {
            n += 1.0;
            term *= 2.0 * z * z / (2.0 * n + 1.0);
            sum += term;
        }
        sum * (-z * z).exp() * std::f64::consts::FRAC_2_SQRT_PI
    }

    fn erfc64_series(z: f64) -> f64 {
        1.0 - erf64_series(z)
    }

    fn erfc64_cf(z: f64) -> f64 {
        let mut f = z;
        for n in (1..=400).rev() {
            f = z + (f64::from(n) / 2.0) / f;
        }
        (-z * z).exp() / std::f64::consts::PI.sqrt() / f
    }

    /// `erfc z` for `z ≥ 0` in `f64` (relative accuracy, also deep in the tail).
    fn erfc64(z: f64) -> f64 {
        if z < 3.0 {
            erfc64_series(z)
        } else {
            erfc64_cf(z)
        }
    }

    fn gelu64(x: f64) -> f64 {
        let z = x.abs() * std::f64::consts::FRAC_1_SQRT_2;
        if x < 0.0 {
            0.5 * x * erfc64(z)
        } else {
            0.5 * x * (2.0 - erfc64(z))
        }
    }

    fn softplus64(x: f64) -> f64 {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }

    fn mish64(x: f64) -> f64 {
        x * softplus64(x).tanh()
    }

    fn gelu_tanh64(x: f64) -> f64 {
        let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044_715 * x * x * x);
        // 0.5·(1 + tanh u) = sigmoid(2u), without the cancellation for negative u.
        x * sigmoid64(2.0 * u)
    }

    /// Largest ulp error of `f` against `g` over a grid of the finite range where the
    /// truth's magnitude is at least `floor` (and finite in `f32`), with its argument.
    fn worst(f: fn(f32) -> f32, g: fn(f64) -> f64, floor: f64) -> (f64, f32) {
        // Every 997th bit pattern: 4.3 million points per function. The scalar twins
        // are the same code on every target; where the tests run under emulation
        // (aarch64 in CI, ~8× slower) a coarser grid of 540 thousand points keeps this
        // test from taking two minutes.
        let stride = if cfg!(target_arch = "x86_64") {
            997
        } else {
            7_919
        };
        let mut w = (0.0, 0.0);
        let mut b = 0u32;
        while b < 0x7f80_0000 {
            for x in [f32::from_bits(b), -f32::from_bits(b)] {
                let want = g(f64::from(x));
                if want.is_nan() || want.abs() < floor || want.abs() > f64::from(f32::MAX) {
                    continue;
                }
                let u = ulps(f(x), want);
                if u > w.0 || u.is_nan() {
                    w = (u, x);
                }
            }
            b += stride;
        }
        w
    }

    #[test]
    fn new_functions_against_f64() {
        // (name, function, truth, magnitude floor, ulp bound)
        type Case = (&'static str, fn(f32) -> f32, fn(f64) -> f64, f64, f64);
        let cases: [Case; 7] = [
            ("expm1", expm1, f64::exp_m1, 1e-37, 3.0),
            ("ln", ln, f64::ln, 0.0, 2.0),
            ("softplus", softplus, softplus64, 1e-37, 4.0),
            // Below 1e-30 the factor eˣ is subnormal and loses bits.
            ("mish", mish, mish64, 1e-30, 4.0),
            ("erf", erf, erf64, 1e-37, 4.0),
            ("gelu", gelu, gelu64, 1e-37, 8.0),
            (
                "erfc_pos",
                |z| erfc_pos(z.abs()),
                |z| erfc64(z.abs()),
                1e-37,
                8.0,
            ),
        ];
        let mut report = Vec::new();
        for (name, f, g, floor, bound) in cases {
            let (u, x) = worst(f, g, floor);
            println!("{name}: worst {u:.2} ulp at x = {x:e}");
            if u.is_nan() || u > bound {
                report.push(format!("{name}: {u:.2} ulp at x = {x:e} (bound {bound})"));
            }
        }
        assert!(report.is_empty(), "{report:?}");
    }

    #[test]
    fn gelu_tanh_against_f64() {
        // The argument u = √(8/π)·(x + 0.044715·x³) takes five f32 roundings; for
        // negative x, sigmoid(u) ≈ eᵘ turns their relative error into |u|·2⁻²¹ of the
        // result: the bound stated in the docs, with 8 ulp for the rest.
        let mut x = 12.0f32;
        while x > -12.0 {
            let (got, want) = (f64::from(gelu_tanh(x)), gelu_tanh64(f64::from(x)));
            let u = 1.595_769_1 * (f64::from(x) + 0.044_715 * f64::from(x).powi(3));
            // Results below 1e-37 may be 0 (e^u under f32::MIN_POSITIVE).
            let tol = want.abs() * (u.abs() * 2f64.powi(-21) + 8.0 * 2f64.powi(-24)) + 1e-37;
            assert!(
                (got - want).abs() <= tol,
                "gelu_tanh({x}) = {got:e}, want {want:e}"
            );
            x -= 0.001_3;
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

    /// The bits of `exp` and `expm1` on every 4099th `f32` (NaN results counted as one
    /// NaN), folded FNV-style: pins both to the results of the reduction as first
    /// written, so a rewrite that changes a single output fails here.
    #[test]
    fn exp_bits_are_pinned() {
        let fold = |f: fn(f32) -> f32| {
            (0..=u32::MAX)
                .step_by(4099)
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    let y = f(f32::from_bits(b));
                    let bits = if y.is_nan() { 0x7fc0_0000 } else { y.to_bits() };
                    (h ^ u64::from(bits)).wrapping_mul(0x0100_0000_01b3)
                })
        };
        assert_eq!(fold(exp), 0x5a26_0ae3_0731_6dd8);
        assert_eq!(fold(expm1), 0x6b62_b878_8a71_4ac8);
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
        for f in [expm1, ln, softplus, mish, erf, gelu, gelu_tanh] {
            assert!(f(f32::NAN).is_nan());
        }
        assert_eq!(expm1(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1(f32::INFINITY), f32::INFINITY);
        assert_eq!(expm1(0.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan());
        assert_eq!(ln(1.0), 0.0);
        assert!(
            (ln(f32::from_bits(1)) - (-103.278_93)).abs() < 1e-4,
            "smallest subnormal"
        );
        assert_eq!(softplus(f32::INFINITY), f32::INFINITY);
        assert_eq!(softplus(f32::NEG_INFINITY), 0.0);
        assert_eq!(mish(f32::INFINITY), f32::INFINITY);
        assert_eq!(mish(f32::NEG_INFINITY), 0.0);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu(f32::NEG_INFINITY), 0.0);
        assert_eq!(gelu_tanh(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu_tanh(f32::NEG_INFINITY), 0.0);
        assert_eq!(elu(f32::NEG_INFINITY, 2.0), -2.0);
        assert!(elu(f32::NAN, 1.0).is_nan());
        assert!(hard_sigmoid(f32::NAN, 0.2, 0.5).is_nan());
    }

    #[test]
    fn dense_grid_against_f64() {
        // Every 97th f32 bit pattern of the finite range (≈ 44 M values / 97).
        let mut errs = Vec::new();
        let mut b = 0u32;
        while b < 0x7f80_0000 {
            for x in [f32::from_bits(b), -f32::from_bits(b)] {
                for r in [check_exp(x), check_sigmoid(x), check_silu(x), check_tanh(x)] {
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
            let mapped = |g: &dyn Fn(f32) -> f32, f: fn(&[f32], &mut [f32])| {
                let mut d = vec![0.0; v.len()];
                f(&v, &mut d);
                for (a, &x) in d.iter().zip(&v) {
                    prop_assert_eq!(a.to_bits(), g(x).to_bits(), "x = {}", x);
                }
                Ok(())
            };
            mapped(&expm1, expm1_into)?;
            mapped(&ln, ln_into)?;
            mapped(&softplus, softplus_into)?;
            mapped(&mish, mish_into)?;
            mapped(&erf, erf_into)?;
            mapped(&gelu, gelu_into)?;
            mapped(&gelu_tanh, gelu_tanh_into)?;
            mapped(&|x| elu(x, 0.7), |s, d| elu_into(s, d, 0.7))?;
            mapped(&|x| selu(x, 1.67, 1.05), |s, d| selu_into(s, d, 1.67, 1.05))?;
            mapped(&|x| celu(x, 0.8), |s, d| celu_into(s, d, 0.8))?;
            mapped(&|x| hard_sigmoid(x, 0.2, 0.5), |s, d| hard_sigmoid_into(s, d, 0.2, 0.5))?;
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
            prop_assert!(check_silu(x).is_ok(), "{:?}", check_silu(x));
            prop_assert!(check_tanh(x).is_ok(), "{:?}", check_tanh(x));
        }
    }
}
