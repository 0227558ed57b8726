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

/// How the output of a broadcast binary operation on two contiguous operands splits
/// into runs of `len` elements in which one operand (or both) is read contiguously and
/// the other is contiguous too or one repeated value: a squeeze-excitation scale
/// `[N, C, H, W] · [N, C, 1, 1]` is `N·C` runs of `H·W` with one `b` value each; a bias
/// `[N, T, C] + [C]` is `N·T` runs of `C` over the same `b`. The runs are walked in
/// output order, so the result is the same as the element-by-element broadcast.
#[derive(Debug)]
struct Runs {
    kind: RunKind,
    len: usize,
    /// Output dimensions outside the run, with each operand's element stride in them
    /// (0 where it is broadcast).
    outer: Vec<(usize, usize, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RunKind {
    /// Both operands contiguous over the run.
    Both,
    /// `a` contiguous, `b` one value per run.
    A,
    /// `b` contiguous, `a` one value per run.
    B,
}

impl Runs {
    /// Shortest run worth the per-run overhead; shorter ones use ndarray's `Zip`.
    const MIN_LEN: usize = 8;

    /// The runs of `out` (the broadcast of `a` and `b`), or `None` when they would be
    /// shorter than [`Self::MIN_LEN`].
    fn plan(a: &[usize], b: &[usize], out: &[usize]) -> Option<Runs> {
        let r = out.len();
        let pad = |s: &[usize]| -> Vec<usize> {
            let mut v = vec![1; r - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (a, b) = (pad(a), pad(b));
        let mut kind = None;
        let mut k = r;
        while k > 0 {
            let d = k - 1;
            if out[d] != 1 {
                let here = match (a[d] == out[d], b[d] == out[d]) {
                    (true, true) => RunKind::Both,
                    (true, false) => RunKind::A,
                    (false, true) => RunKind::B,
                    (false, false) => return None,
                };
                match kind {
                    None => kind = Some(here),
                    Some(kd) if kd != here => break,
                    Some(_) => {}
                }
            }
            k -= 1;
        }
        let len: usize = out[k..].iter().product();
        if len < Self::MIN_LEN {
            return None;
        }
        let strides = |s: &[usize]| -> Vec<usize> {
            let mut st = vec![0; r];
            let mut acc = 1;
            for d in (0..r).rev() {
                st[d] = if s[d] == 1 { 0 } else { acc };
                acc *= s[d];
            }
            st
        };
        let (sa, sb) = (strides(&a), strides(&b));
        let outer = (0..k).map(|d| (out[d], sa[d], sb[d])).collect();
        Some(Runs {
            kind: kind.unwrap_or(RunKind::Both),
            len,
            outer,
        })
    }

    /// Writes the broadcast's output elements `start..start + out.len()` (in output
    /// order) into `out`.
    fn fill<A: Copy, B: Copy, C>(
        &self,
        x: &[A],
        y: &[B],
        start: usize,
        out: &mut [C],
        f: &impl Fn(A, B) -> C,
    ) {
        let len = self.len;
        let (mut run, mut o) = (start / len, start % len);
        // The odometer at run `run`, and both operands' offsets there.
        let mut idx = vec![0usize; self.outer.len()];
        let (mut ao, mut bo) = (0usize, 0usize);
        for (d, &(size, sa, sb)) in self.outer.iter().enumerate().rev() {
            idx[d] = run % size;
            run /= size;
            ao += idx[d] * sa;
            bo += idx[d] * sb;
        }
        let mut pos = 0;
        while pos < out.len() {
            let n = (len - o).min(out.len() - pos);
            let dst = &mut out[pos..pos + n];
            match self.kind {
                RunKind::Both => {
                    for (d, (&p, &q)) in dst.iter_mut().zip(x[ao + o..].iter().zip(&y[bo + o..])) {
                        *d = f(p, q);
                    }
                }
                RunKind::A => {
                    let q = y[bo];
                    for (d, &p) in dst.iter_mut().zip(&x[ao + o..]) {
                        *d = f(p, q);
                    }
                }
                RunKind::B => {
                    let p = x[ao];
                    for (d, &q) in dst.iter_mut().zip(&y[bo + o..]) {
                        *d = f(p, q);
                    }
                }
            }
            pos += n;
            o = 0;
            // Next outer index (odometer), keeping both operands' offsets in step.
            for (d, &(size, sa, sb)) in self.outer.iter().enumerate().rev() {
                idx[d] += 1;
                ao += sa;
                bo += sb;
                if idx[d] < size {
                    break;
                }
                idx[d] = 0;
                ao -= sa * size;
                bo -= sb * size;
            }
        }
    }

    /// [`Runs::fill`] over the whole output, in contiguous pieces (two per thread of the
    /// plan's pool) when it has at least 2¹⁵ elements, else on the calling thread. Each
    /// element is computed by the same code either way.
    fn fill_split<A: Copy + Sync, B: Copy + Sync, C: Send>(
        &self,
        x: &[A],
        y: &[B],
        out: &mut [C],
        f: &(impl Fn(A, B) -> C + Sync),
    ) {
        use rayon::prelude::*;
        let threads = super::util::split_threads(out.len());
        if threads <= 1 {
            self.fill(x, y, 0, out, f);
            return;
        }
        let piece = out.len().div_ceil(2 * threads).next_multiple_of(16);
        out.par_chunks_mut(piece)
            .enumerate()
            .for_each(|(i, d)| self.fill(x, y, i * piece, d, f));
    }
}

/// Applies `f` element-wise over the numpy broadcast of `a` and `b`.
///
/// # Errors
/// The shapes do not broadcast.
pub fn zip_bcast<A: Copy + Sync, B: Copy + Sync, C: Copy + Default + Send + 'static>(
    node: &Node,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C + Sync,
) -> Result<ArrayD<C>> {
    let shape = if a.shape() == b.shape() {
        a.shape().to_vec()
    } else {
        super::util::broadcast_shapes(node, a.shape(), b.shape())?
    };
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice())
        && let Some(runs) = Runs::plan(a.shape(), b.shape(), &shape)
    {
        let mut v = super::util::overwritten_pooled::<C>(shape.iter().product());
        runs.fill_split(x, y, &mut v, &f);
        return ArrayD::from_shape_vec(IxDyn(&shape), v)
            .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))));
    }
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

#[cfg(test)]
mod tests {
    use super::zip_bcast;
    use crate::Node;
    use ndarray::{ArrayD, IxDyn, Zip};
    use proptest::prelude::*;

    /// Two broadcast-compatible shapes of rank ≤ 4 (each dimension of each operand
    /// either the common size or 1, and one operand possibly of lower rank).
    fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (1usize..=4, 0usize..=4)
            .prop_flat_map(|(r, drop)| {
                (
                    proptest::collection::vec(1usize..=12, r),
                    proptest::collection::vec(0u8..3, r),
                    Just(drop.min(r)),
                )
            })
            .prop_map(|(dims, pick, drop)| {
                let a: Vec<usize> = dims
                    .iter()
                    .zip(&pick)
                    .map(|(&d, &p)| if p == 1 { 1 } else { d })
                    .collect();
                let b: Vec<usize> = dims
                    .iter()
                    .zip(&pick)
                    .map(|(&d, &p)| if p == 2 { 1 } else { d })
                    .collect();
                (a, b[drop..].to_vec())
            })
    }

    /// Outputs of at least 2¹⁵ elements are split over the pool's threads in pieces
    /// that start inside runs; every kind of run must still give the element-wise
    /// broadcast.
    #[test]
    fn split_runs_match_elementwise_broadcast() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let cases: [(&[usize], &[usize]); 6] = [
            (&[1, 37, 33, 31], &[1, 37, 1, 1]),
            (&[1, 37, 1, 1], &[1, 37, 33, 31]),
            (&[37, 1, 31], &[1, 33, 31]),
            (&[40_001], &[40_001]),
            (&[1], &[2, 20_011]),
            (&[5, 1, 7001], &[5, 3, 1]),
        ];
        for (sa, sb) in cases {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a =
                ArrayD::from_shape_vec(IxDyn(sa), (0..na).map(|i| i as f32).collect()).expect("a");
            let b = ArrayD::from_shape_vec(IxDyn(sb), (0..nb).map(|i| 0.5 * i as f32).collect())
                .expect("b");
            let got = pool
                .install(|| zip_bcast(&Node::default(), &a, &b, |x, y| 3.0 * x - y))
                .expect("broadcast");
            let shape =
                crate::ops::util::broadcast_shapes(&Node::default(), sa, sb).expect("shape");
            assert!(
                shape.iter().product::<usize>() >= 1 << 15,
                "{shape:?} is not split"
            );
            let want = Zip::from(&a.broadcast(IxDyn(&shape)).expect("a view"))
                .and(&b.broadcast(IxDyn(&shape)).expect("b view"))
                .map_collect(|&x, &y| 3.0 * x - y);
            assert_eq!(got, want, "{sa:?} with {sb:?}");
        }
    }

    proptest! {
        #[test]
        fn runs_match_elementwise_broadcast((sa, sb) in shapes(), swap in any::<bool>()) {
            let (sa, sb) = if swap { (sb, sa) } else { (sa, sb) };
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a = ArrayD::from_shape_vec(IxDyn(&sa), (0..na).map(|i| i as f32).collect()).unwrap();
            let b = ArrayD::from_shape_vec(IxDyn(&sb), (0..nb).map(|i| 1000.0 * i as f32).collect()).unwrap();
            let got = zip_bcast(&Node::default(), &a, &b, |x, y| x - y).unwrap();
            let shape = crate::ops::util::broadcast_shapes(&Node::default(), &sa, &sb).unwrap();
            let want = Zip::from(&a.broadcast(IxDyn(&shape)).unwrap())
                .and(&b.broadcast(IxDyn(&shape)).unwrap())
                .map_collect(|&x, &y| x - y);
            prop_assert_eq!(got, want);
        }
    }
}
