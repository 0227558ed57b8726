//! Numeric element types and broadcasting element-wise kernels.
//!
//! Integer arithmetic wraps on overflow (as C and onnxruntime do) and integer division
//! or remainder by zero yields 0 instead of trapping (documented choice: ONNX leaves it
//! undefined).

use super::util::Elem;
use crate::ops::attr::describe;
use crate::{Error, Node, Result};
use ndarray::{ArrayD, IxDyn, Zip};

/// A numeric element type with the arithmetic the operators need.
pub trait Num: Elem {
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Whether this is a floating-point type.
    const FLOAT: bool;
    /// `a + b` (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// `a - b` (wrapping for integers).
    fn sub(a: Self, b: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(a: Self, b: Self) -> Self;
    /// `a / b` (integers truncate; division by zero gives 0).
    fn div(a: Self, b: Self) -> Self;
    /// `a` to the power `b`.
    fn pow(a: Self, b: Self) -> Self;
    /// Remainder: `fmod` semantics (sign of `a`) or, if `!fmod`, sign of `b` (Python).
    fn rem(a: Self, b: Self, fmod: bool) -> Self;
    /// Minimum (NaN propagates).
    fn min(a: Self, b: Self) -> Self;
    /// Maximum (NaN propagates).
    fn max(a: Self, b: Self) -> Self;
    /// Negation (wrapping for integers).
    fn neg(a: Self) -> Self;
    /// Absolute value (wrapping for integers).
    fn abs(a: Self) -> Self;
    /// Whether the value is NaN.
    fn is_nan(a: Self) -> bool;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Num for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const FLOAT: bool = true;
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn sub(a: Self, b: Self) -> Self {
                a - b
            }
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
            fn div(a: Self, b: Self) -> Self {
                a / b
            }
            fn pow(a: Self, b: Self) -> Self {
                a.powf(b)
            }
            fn rem(a: Self, b: Self, fmod: bool) -> Self {
                let r = a % b;
                if fmod || r == 0.0 || (r < 0.0) == (b < 0.0) {
                    r
                } else {
                    r + b
                }
            }
            fn min(a: Self, b: Self) -> Self {
                if a.is_nan() || b.is_nan() {
                    <$t>::NAN
                } else {
                    a.min(b)
                }
            }
            fn max(a: Self, b: Self) -> Self {
                if a.is_nan() || b.is_nan() {
                    <$t>::NAN
                } else {
                    a.max(b)
                }
            }
            fn neg(a: Self) -> Self {
                -a
            }
            fn abs(a: Self) -> Self {
                a.abs()
            }
            fn is_nan(a: Self) -> bool {
                a.is_nan()
            }
        }
    };
}

macro_rules! impl_int {
    ($t:ty) => {
        impl Num for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const FLOAT: bool = false;
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            fn sub(a: Self, b: Self) -> Self {
                a.wrapping_sub(b)
            }
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
            fn div(a: Self, b: Self) -> Self {
                a.checked_div(b).unwrap_or(0)
            }
            fn pow(a: Self, b: Self) -> Self {
                (a as f64).powf(b as f64) as $t
            }
            fn rem(a: Self, b: Self, fmod: bool) -> Self {
                let r = a.checked_rem(b).unwrap_or(0);
                #[allow(unused_comparisons)]
                let differ = (r < 0) != (b < 0);
                if fmod || r == 0 || !differ {
                    r
                } else {
                    r.wrapping_add(b)
                }
            }
            fn min(a: Self, b: Self) -> Self {
                Ord::min(a, b)
            }
            fn max(a: Self, b: Self) -> Self {
                Ord::max(a, b)
            }
            #[allow(unused_comparisons)]
            fn neg(a: Self) -> Self {
                (0 as $t).wrapping_sub(a)
            }
            #[allow(unused_comparisons)]
            fn abs(a: Self) -> Self {
                if a < 0 { (0 as $t).wrapping_sub(a) } else { a }
            }
            fn is_nan(_: Self) -> bool {
                false
            }
        }
    };
}

impl_float!(f32);
impl_float!(f64);
impl_int!(i8);
impl_int!(u8);
impl_int!(i16);
impl_int!(u16);
impl_int!(i32);
impl_int!(i64);

/// Runs `$body` with `$T` bound to the numeric Rust type of `$dt` (not bool, f16, bf16).
#[macro_export]
#[doc(hidden)]
macro_rules! with_num {
    ($dt:expr, $T:ident => $body:expr) => {{
        use $crate::__core::DType as __D;
        match $dt {
            __D::F32 => {
                type $T = f32;
                $body
            }
            __D::F64 => {
                type $T = f64;
                $body
            }
            __D::I8 => {
                type $T = i8;
                $body
            }
            __D::U8 => {
                type $T = u8;
                $body
            }
            __D::I16 => {
                type $T = i16;
                $body
            }
            __D::U16 => {
                type $T = u16;
                $body
            }
            __D::I32 => {
                type $T = i32;
                $body
            }
            __D::I64 => {
                type $T = i64;
                $body
            }
            other => Err($crate::Error::Unsupported(format!(
                "element type {other:?} in a numeric operator"
            ))),
        }
    }};
}

/// Applies `f` element-wise over the numpy broadcast of `a` and `b`.
///
/// # Errors
/// The shapes do not broadcast.
pub fn zip_bcast<A: Copy, B: Copy, C>(
    node: &Node,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>> {
    if a.shape() == b.shape() {
        if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
            let v: Vec<C> = x.iter().zip(y).map(|(&x, &y)| f(x, y)).collect();
            return ArrayD::from_shape_vec(IxDyn(a.shape()), v)
                .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))));
        }
        return Ok(Zip::from(a).and(b).map_collect(|&x, &y| f(x, y)));
    }
    if b.len() == 1
        && b.ndim() <= a.ndim()
        && let (Some(x), Some(&y)) = (a.as_slice(), b.iter().next())
    {
        let v: Vec<C> = x.iter().map(|&x| f(x, y)).collect();
        return ArrayD::from_shape_vec(IxDyn(a.shape()), v)
            .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))));
    }
    let shape = super::util::broadcast_shapes(node, a.shape(), b.shape())?;
    let sh = IxDyn(&shape);
    let bad = || {
        Error::ShapeMismatch(format!(
            "{}: shapes {:?} and {:?} do not broadcast",
            describe(node),
            a.shape(),
            b.shape()
        ))
    };
    let av = a.broadcast(sh.clone()).ok_or_else(bad)?;
    let bv = b.broadcast(sh).ok_or_else(bad)?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}
