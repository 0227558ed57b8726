//! Shared helpers of the built-in operators: element-type dispatch, broadcasting,
//! input access with errors that name the node.

use crate::ops::attr::describe;
use crate::{Error, Node, Result, Tensor};
use edgeml_core::{DType, bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// An element type that a [`Tensor`] can hold.
pub trait Elem:
    Clone + Copy + Default + Send + Sync + PartialOrd + std::fmt::Debug + 'static
{
    /// The element type's [`DType`].
    const DTYPE: DType;
    /// The array inside `t`, if `t` holds this type.
    fn get(t: &Tensor) -> Option<&ArrayD<Self>>;
    /// Wraps an array into a tensor.
    fn wrap(a: ArrayD<Self>) -> Tensor;
    /// Converts to `f64` (lossy for huge integers).
    fn to_f64(self) -> f64;
    /// Converts from `f64`, as a C cast would (saturating for integers, NaN → 0).
    fn from_f64(v: f64) -> Self;
}

macro_rules! impl_elem {
    ($t:ty, $v:ident, $dt:ident, $to:expr, $from:expr) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$dt;
            fn get(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$v(a)
            }
            fn to_f64(self) -> f64 {
                #[allow(clippy::redundant_closure_call)]
                ($to)(self)
            }
            fn from_f64(v: f64) -> Self {
                #[allow(clippy::redundant_closure_call)]
                ($from)(v)
            }
        }
    };
}

impl_elem!(f32, F32, F32, |x: f32| x as f64, |v: f64| v as f32);
impl_elem!(f64, F64, F64, |x: f64| x, |v: f64| v);
impl_elem!(f16, F16, F16, |x: f16| x.to_f64(), f16::from_f64);
impl_elem!(bf16, BF16, BF16, |x: bf16| x.to_f64(), bf16::from_f64);
impl_elem!(i8, I8, I8, |x: i8| x as f64, |v: f64| v as i8);
impl_elem!(u8, U8, U8, |x: u8| x as f64, |v: f64| v as u8);
impl_elem!(i16, I16, I16, |x: i16| x as f64, |v: f64| v as i16);
impl_elem!(u16, U16, U16, |x: u16| x as f64, |v: f64| v as u16);
impl_elem!(i32, I32, I32, |x: i32| x as f64, |v: f64| v as i32);
impl_elem!(i64, I64, I64, |x: i64| x as f64, |v: f64| v as i64);
impl_elem!(bool, Bool, Bool, |x: bool| x as u8 as f64, |v: f64| v
    != 0.0);

/// Runs `$body` with `$T` bound to the Rust type of `DType` `$dt`; the body must
/// evaluate to a `Result`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_dtype {
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
            __D::F16 => {
                type $T = $crate::__core::f16;
                $body
            }
            __D::BF16 => {
                type $T = $crate::__core::bf16;
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
            __D::Bool => {
                type $T = bool;
                $body
            }
            other => Err($crate::Error::Unsupported(format!(
                "element type {other:?}"
            ))),
        }
    }};
}

/// Input `i` of an operator, which must be present.
///
/// # Errors
/// The input is omitted.
pub fn input<'t>(node: &Node, inputs: &[Option<&'t Tensor>], i: usize) -> Result<&'t Tensor> {
    inputs.get(i).copied().flatten().ok_or_else(|| {
        Error::InvalidInput(format!("{}: required input {i} is missing", describe(node)))
    })
}

/// Input `i` as an array of `T`.
///
/// # Errors
/// The input is missing or has another element type.
pub fn typed<'t, T: Elem>(
    node: &Node,
    inputs: &[Option<&'t Tensor>],
    i: usize,
) -> Result<&'t ArrayD<T>> {
    let t = input(node, inputs, i)?;
    T::get(t).ok_or_else(|| dtype_err(node, i, t.dtype(), &[T::DTYPE]))
}

/// An error for input `i` of `node` having element type `got` rather than one of `want`.
pub fn dtype_err(node: &Node, i: usize, got: DType, want: &[DType]) -> Error {
    Error::InvalidInput(format!(
        "{}: input {i} has element type {got:?}, expected one of {want:?}",
        describe(node)
    ))
}

/// Reads an integer tensor (i64, i32, or other integer types) as a flat `Vec<i64>`.
///
/// # Errors
/// The tensor is not of an integer type.
pub fn to_i64_vec(node: &Node, t: &Tensor) -> Result<Vec<i64>> {
    Ok(match t {
        Tensor::I64(a) => a.iter().copied().collect(),
        Tensor::I32(a) => a.iter().map(|&v| v as i64).collect(),
        Tensor::I16(a) => a.iter().map(|&v| v as i64).collect(),
        Tensor::I8(a) => a.iter().map(|&v| v as i64).collect(),
        Tensor::U8(a) => a.iter().map(|&v| v as i64).collect(),
        Tensor::U16(a) => a.iter().map(|&v| v as i64).collect(),
        other => {
            return Err(Error::InvalidInput(format!(
                "{}: expected an integer tensor, found {:?}",
                describe(node),
                other.dtype()
            )));
        }
    })
}

/// Reads a float tensor as a flat `Vec<f32>` (f32, f64, f16 accepted).
///
/// # Errors
/// The tensor is not of a float type.
pub fn to_f32_vec(node: &Node, t: &Tensor) -> Result<Vec<f32>> {
    Ok(match t {
        // A contiguous array is read as a slice: ndarray's element iterator over
        // dynamic dimensions costs several ns per element.
        Tensor::F32(a) => match a.as_slice() {
            Some(s) => {
                let mut v = with_capacity_pooled(s.len());
                v.extend_from_slice(s);
                v
            }
            None => a.iter().copied().collect(),
        },
        Tensor::F64(a) => match a.as_slice() {
            Some(s) => s.iter().map(|&v| v as f32).collect(),
            None => a.iter().map(|&v| v as f32).collect(),
        },
        Tensor::F16(a) => match a.as_slice() {
            Some(s) => s.iter().map(|v| v.to_f32()).collect(),
            None => a.iter().map(|v| v.to_f32()).collect(),
        },
        other => {
            return Err(Error::InvalidInput(format!(
                "{}: expected a float tensor, found {:?}",
                describe(node),
                other.dtype()
            )));
        }
    })
}

/// The numpy broadcast of two shapes.
///
/// # Errors
/// The shapes are not broadcast-compatible.
pub fn broadcast_shapes(node: &Node, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::ShapeMismatch(format!(
                "{}: shapes {a:?} and {b:?} do not broadcast",
                describe(node)
            )));
        };
    }
    Ok(out)
}

/// Broadcasts `a` to `shape` and collects into an owned array (standard layout).
///
/// # Errors
/// `a` cannot be broadcast to `shape`.
pub fn broadcast_to<T: Clone>(node: &Node, a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
    let v = a.broadcast(IxDyn(shape)).ok_or_else(|| {
        Error::ShapeMismatch(format!(
            "{}: cannot broadcast {:?} to {shape:?}",
            describe(node),
            a.shape()
        ))
    })?;
    Ok(v.to_owned())
}

/// Maximum number of elements an operator may create from data-dependent sizes
/// (`ConstantOfShape`, `Expand`, `Tile`, `Range`, …): 2^31.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Checks that a shape has at most [`MAX_ELEMENTS`] elements.
///
/// # Errors
/// The element count overflows or exceeds the limit.
pub fn check_size(node: &Node, shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                Error::LimitExceeded(format!(
                    "{}: shape {shape:?} has more than {MAX_ELEMENTS} elements",
                    describe(node)
                ))
            })?;
    }
    Ok(n)
}

/// Converts a list of signed dims into `usize`, rejecting negatives.
///
/// # Errors
/// A dimension is negative.
pub fn to_dims(node: &Node, v: &[i64]) -> Result<Vec<usize>> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                Error::InvalidInput(format!(
                    "{}: negative dimension {d} in {v:?}",
                    describe(node)
                ))
            })
        })
        .collect()
}

/// Casts every element of `t` to `T` via `f64` (C-cast semantics; bool is `!= 0`;
/// float→int truncates toward zero and saturates, NaN → 0). Integers beyond 2^53 lose
/// precision.
pub fn cast_to<T: Elem>(t: &Tensor) -> ArrayD<T> {
    crate::tensor_dispatch!(t, a => a.mapv(|x| T::from_f64(Elem::to_f64(x))))
}

/// A copy of `node` without its attributes (operators keep it for error messages).
pub fn slim(node: &Node) -> Node {
    Node {
        name: node.name.clone(),
        op_type: node.op_type.clone(),
        domain: node.domain.clone(),
        outputs: node.outputs.clone(),
        ..Node::default()
    }
}

/// `Σ f(v)` over `x` in `f64`, in eight partial sums (vectorizable; the order differs
/// from a sequential sum by `f64` rounding only).
#[inline(always)]
pub(crate) fn sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// An empty vector with room for `n` elements, from the per-thread `f32` buffer pool
/// ([`crate::buffers`]) when `T` is `f32` (warm memory for big layout copies).
pub(crate) fn with_capacity_pooled<T: 'static>(n: usize) -> Vec<T> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        let b: Box<dyn std::any::Any> = Box::new(crate::buffers::take_f32_empty(n));
        if let Ok(v) = b.downcast::<Vec<T>>() {
            return *v;
        }
    }
    Vec::with_capacity(n)
}

/// A vector of `n` initialised elements for an output the caller overwrites
/// completely: a recycled block of the per-thread `f32` pool
/// ([`crate::buffers::take_overwritten`]) when `T` is `f32`, else `n` defaults.
pub(crate) fn overwritten_pooled<T: Copy + Default + 'static>(n: usize) -> Vec<T> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        let b: Box<dyn std::any::Any> = Box::new(crate::buffers::take_f32_overwritten(n));
        if let Ok(v) = b.downcast::<Vec<T>>() {
            return *v;
        }
    }
    vec![T::default(); n]
}

/// Transposes whose last axes stay in place (e.g. the channel shuffle
/// `[N, g, C/g, H, W] → [N, C/g, g, H, W]`): the output is a sequence of contiguous
/// blocks of the input, copied with `memcpy`. `None` when the input is not contiguous
/// or the blocks would be short (the general strided copy is as good then).
pub(crate) fn transpose_blocks<T: Copy + 'static>(
    a: &ArrayD<T>,
    perm: &[usize],
) -> Option<ArrayD<T>> {
    const MIN_BLOCK: usize = 16;
    let src = a.as_slice()?;
    let r = perm.len();
    let shape = a.shape();
    let kept = perm
        .iter()
        .enumerate()
        .rev()
        .take_while(|&(i, &p)| i == p)
        .count();
    if kept == r {
        return Some(a.clone());
    }
    let block: usize = shape[r - kept..].iter().product();
    if block < MIN_BLOCK {
        return None;
    }
    let outer = r - kept;
    // Input strides in elements, and the output's outer dims with matching strides.
    let mut stride = vec![0usize; r];
    let mut acc = 1;
    for i in (0..r).rev() {
        stride[i] = acc;
        acc *= shape[i];
    }
    let dims: Vec<usize> = perm[..outer].iter().map(|&p| shape[p]).collect();
    let strides: Vec<usize> = perm[..outer].iter().map(|&p| stride[p]).collect();
    let mut out = with_capacity_pooled(src.len());
    let mut idx = vec![0usize; outer];
    let total_blocks: usize = dims.iter().product();
    let mut off = 0usize;
    for _ in 0..total_blocks {
        out.extend_from_slice(&src[off..off + block]);
        // Odometer over the output's outer dims.
        for d in (0..outer).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < dims[d] {
                break;
            }
            off -= strides[d] * dims[d];
            idx[d] = 0;
        }
    }
    let mut out_shape = dims;
    out_shape.extend_from_slice(&shape[r - kept..]);
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).ok()
}

/// Concatenation of contiguous arrays of matching shapes: for each index of the axes
/// before `axis`, each input's contiguous chunk is copied in turn. `None` when an input
/// is not contiguous or the shapes do not match (the general path reports the error).
pub(crate) fn concat_contiguous<T: Copy + Default + Send + Sync + 'static>(
    arrays: &[&ArrayD<T>],
    axis: usize,
) -> Option<ArrayD<T>> {
    let first = arrays.first()?;
    let shape = first.shape();
    let mut out_shape = shape.to_vec();
    out_shape[axis] = 0;
    let mut chunks = Vec::with_capacity(arrays.len());
    for a in arrays {
        let s = a.shape();
        if s.len() != shape.len()
            || s.iter()
                .zip(shape)
                .enumerate()
                .any(|(i, (x, y))| i != axis && x != y)
        {
            return None;
        }
        out_shape[axis] += s[axis];
        chunks.push((a.as_slice()?, s[axis..].iter().product::<usize>()));
    }
    let outer: usize = shape[..axis].iter().product();
    let total: usize = out_shape.iter().product();
    let mut out = overwritten_pooled::<T>(total);
    // The copies in output order, as (destination, source) pairs; above 2¹⁵ elements
    // inside a parallel pool they are cut into pieces of at most a quarter of the output
    // per thread and copied by the pool's threads.
    let threads = split_threads(total);
    let piece = total.div_ceil(2 * threads).max(1);
    let mut copies: Vec<(&mut [T], &[T])> = Vec::new();
    let mut rest: &mut [T] = &mut out;
    for o in 0..outer {
        for &(src, chunk) in &chunks {
            for part in src[o * chunk..(o + 1) * chunk].chunks(piece) {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(part.len());
                rest = tail;
                copies.push((head, part));
            }
        }
    }
    if threads > 1 {
        use rayon::prelude::*;
        copies
            .into_par_iter()
            .for_each(|(d, s)| d.copy_from_slice(s));
    } else {
        for (d, s) in copies {
            d.copy_from_slice(s);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).ok()
}

/// How many threads an element-wise pass over `len` elements is split over: the plan's
/// pool when the pass has at least 2¹⁵ elements and runs inside it, else 1.
pub(crate) fn split_threads(len: usize) -> usize {
    if len >= 1 << 15 && crate::kernels::in_parallel_pool() {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Runs the element-wise kernel `f(src, dst)` in contiguous pieces, one per thread of
/// the plan's pool, when the pass is large enough to be worth splitting (at least 2¹⁵
/// elements); else on the calling thread. Each element is computed by the same code
/// either way, so the result does not depend on the split.
///
/// # Panics
/// If `src` and `dst` differ in length.
pub(crate) fn map_split(src: &[f32], dst: &mut [f32], f: &(dyn Fn(&[f32], &mut [f32]) + Sync)) {
    use rayon::prelude::*;
    assert_eq!(
        src.len(),
        dst.len(),
        "source and destination lengths differ"
    );
    let threads = split_threads(src.len());
    if threads <= 1 {
        f(src, dst);
        return;
    }
    // Pieces of whole cache lines, two per thread so an uneven core still balances.
    let piece = src.len().div_ceil(2 * threads).next_multiple_of(16);
    dst.par_chunks_mut(piece)
        .zip(src.par_chunks(piece))
        .for_each(|(d, s)| f(s, d));
}

#[cfg(test)]
mod layout_tests {
    use super::{concat_contiguous, transpose_blocks};
    use ndarray::{ArrayD, Axis, IxDyn};
    use proptest::prelude::*;

    fn arr(shape: &[usize]) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| i as f32).collect()).expect("shape")
    }

    /// Outputs of at least 2¹⁵ elements are copied by a pool's threads in pieces that
    /// cut the inputs' chunks; the result must still be the concatenation.
    #[test]
    fn concat_split_over_threads_matches_ndarray() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        for (shape, sizes, axis) in [
            (vec![1, 0, 61, 67], vec![5, 16, 3], 1),
            (vec![2, 0, 7001], vec![1, 2, 1], 1),
            (vec![40_000, 0], vec![1, 2], 1),
            (vec![0, 9000], vec![3, 1], 0),
        ] {
            let arrays: Vec<ArrayD<f32>> = sizes
                .iter()
                .map(|&k| {
                    let mut s = shape.clone();
                    s[axis] = k;
                    arr(&s)
                })
                .collect();
            let refs: Vec<&ArrayD<f32>> = arrays.iter().collect();
            let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
            let want = ndarray::concatenate(Axis(axis), &views).expect("concat");
            assert!(want.len() >= 1 << 15, "{:?} is not split", want.shape());
            let got = pool
                .install(|| concat_contiguous(&refs, axis))
                .expect("fast path");
            assert_eq!(
                got,
                want.as_standard_layout().into_owned(),
                "{shape:?} {sizes:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn transpose_blocks_matches_ndarray(
            dims in proptest::collection::vec(1usize..5, 2..6),
            tail in 8usize..40,
            seed in 0u64..1000,
        ) {
            let mut shape = dims;
            shape.push(tail);
            let r = shape.len();
            // A random permutation of the leading axes; the last axis stays.
            let mut perm: Vec<usize> = (0..r - 1).collect();
            let mut s = seed;
            for i in (1..perm.len()).rev() {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                perm.swap(i, (s >> 33) as usize % (i + 1));
            }
            perm.push(r - 1);
            let a = arr(&shape);
            let want = a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
            if let Some(got) = transpose_blocks(&a, &perm) {
                prop_assert_eq!(got, want);
            } else {
                prop_assert!(tail < 16);
            }
        }

        #[test]
        fn concat_contiguous_matches_ndarray(
            shape in proptest::collection::vec(1usize..5, 1..5),
            sizes in proptest::collection::vec(0usize..4, 1..4),
            axis_pick in 0usize..8,
        ) {
            let axis = axis_pick % shape.len();
            let arrays: Vec<ArrayD<f32>> = sizes
                .iter()
                .map(|&k| {
                    let mut s = shape.clone();
                    s[axis] = k;
                    arr(&s)
                })
                .collect();
            let refs: Vec<&ArrayD<f32>> = arrays.iter().collect();
            let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
            let want = ndarray::concatenate(Axis(axis), &views).expect("concat");
            let got = concat_contiguous(&refs, axis).expect("fast path");
            prop_assert_eq!(got, want.as_standard_layout().into_owned());
        }
    }
}
