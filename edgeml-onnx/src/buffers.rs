//! Recycled output buffers, so that a plan run many times does not hand large blocks
//! back to the operating system after every operator and fault them in again on the
//! next run (glibc serves allocations above its mmap threshold with fresh pages).
//!
//! Each thread keeps a small pool of `Vec<f32>`, one of `Vec<u8>` and one of
//! `Vec<i8>` (the element types of float and quantized activations). The interpreter
//! (`Program::run`) gives back every tensor of those types it frees at its last use;
//! operators that build an output draw from the pool: built-in `f32` operators with
//! `take_f32` (zero-filled, for outputs built by accumulation) or `take_f32_empty`
//! (length 0, capacity ≥ `len`, for outputs written front to back with `extend`/`push`),
//! operators registered from other crates with [`take_overwritten`] (for outputs their
//! kernel writes completely, such as edgeml-quant's INT8 convolutions). All of them fall
//! back to a fresh allocation when the pool has no block big enough, so using them is
//! never wrong, only faster. No uninitialised memory is ever exposed.
//!
//! Bounds, per thread and element type: at most 16 blocks and 256 MiB; blocks smaller
//! than 4096 elements are not kept (the allocator handles small blocks well). The
//! memory stays with the thread until the thread ends.
//!
//! For operator code (e.g. a convolution's output):
//! ```ignore
//! let mut out = crate::buffers::take_f32(n);     // zeros, len n
//! // ... accumulate into out ...
//! let mut out = crate::buffers::take_f32_empty(n); // len 0, capacity >= n
//! out.extend(x.iter().map(|v| v * 2.0));
//! ```

use crate::Tensor;
use std::cell::RefCell;

/// Most blocks kept per thread.
pub(crate) const MAX_BUFFERS: usize = 16;
/// Most bytes kept per thread (256 MiB).
pub(crate) const MAX_BYTES: usize = 256 << 20;
/// Blocks with fewer elements than this are left to the allocator.
pub(crate) const MIN_LEN: usize = 4096;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static POOL_U8: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static POOL_I8: RefCell<Vec<Vec<i8>>> = const { RefCell::new(Vec::new()) };
}

/// The element types whose blocks this thread's pools keep: `f32`, `u8` and `i8`.
pub trait Pooled: Copy + Default + Sized + 'static + private::Sealed {
    /// Runs `f` on this thread's pool of blocks of this type.
    #[doc(hidden)]
    fn with_pool<R>(f: impl FnOnce(&RefCell<Vec<Vec<Self>>>) -> R) -> R;
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
}

impl Pooled for f32 {
    fn with_pool<R>(f: impl FnOnce(&RefCell<Vec<Vec<f32>>>) -> R) -> R {
        POOL.with(f)
    }
}

impl Pooled for u8 {
    fn with_pool<R>(f: impl FnOnce(&RefCell<Vec<Vec<u8>>>) -> R) -> R {
        POOL_U8.with(f)
    }
}

impl Pooled for i8 {
    fn with_pool<R>(f: impl FnOnce(&RefCell<Vec<Vec<i8>>>) -> R) -> R {
        POOL_I8.with(f)
    }
}

/// A vector of `len` elements for an output its operator overwrites completely: a
/// block of this thread's pool (recycled from a tensor an earlier step freed, with that
/// tensor's old values) when one fits, else a fresh zero-filled vector. The contents are
/// unspecified but initialised; writing every element before the output is returned is
/// the caller's duty. Saves the zero-filling pass of `vec![0; len]` and, above the
/// allocator's mmap threshold, the page faults of fresh memory on every run.
pub fn take_overwritten<T: Pooled>(len: usize) -> Vec<T> {
    match take_block_as_is(len) {
        Some(mut v) => {
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, T::default());
            }
            v
        }
        None => vec![T::default(); len],
    }
}

/// The smallest pooled block with capacity ≥ `len` (emptied), if any.
fn take_block(len: usize) -> Option<Vec<f32>> {
    take_block_as_is(len).map(|mut v| {
        v.clear();
        v
    })
}

/// The smallest pooled block with capacity ≥ `len`, with its old contents, if any.
fn take_block_as_is<T: Pooled>(len: usize) -> Option<Vec<T>> {
    if len < MIN_LEN {
        return None;
    }
    T::with_pool(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let best = p
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        // Do not serve a small request from a much bigger block (it would be wasted).
        if p[best].capacity() > len.saturating_mul(4) {
            return None;
        }
        Some(p.swap_remove(best))
    })
}

/// A zero-filled vector of `len` elements, recycled when possible.
pub(crate) fn take_f32(len: usize) -> Vec<f32> {
    match take_block(len) {
        Some(mut v) => {
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// A vector of `len` elements with unspecified (but initialised) contents: a recycled
/// block's old values, zeros past them or in a fresh block. For outputs the caller
/// overwrites completely; it saves [`take_f32`]'s zero-filling pass.
pub(crate) fn take_f32_overwritten(len: usize) -> Vec<f32> {
    take_overwritten(len)
}

/// An empty vector with capacity for at least `len` elements, recycled when possible;
/// fill it with `extend`/`push`.
pub(crate) fn take_f32_empty(len: usize) -> Vec<f32> {
    take_block(len).unwrap_or_else(|| Vec::with_capacity(len))
}

/// Gives a vector's memory back to this thread's pool (dropped when the pool is full).
pub(crate) fn give_f32(v: Vec<f32>) {
    give(v);
}

/// Gives a vector's memory back to this thread's pool of its type (dropped when the
/// pool is full).
fn give<T: Pooled>(v: Vec<T>) {
    let cap = v.capacity();
    if cap < MIN_LEN {
        return;
    }
    let size = core::mem::size_of::<T>();
    T::with_pool(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        let bytes: usize = p.iter().map(|b| b.capacity() * size).sum();
        if bytes + cap * size > MAX_BYTES {
            return;
        }
        if p.len() >= MAX_BUFFERS {
            // Replace the smallest block if this one is bigger (big blocks matter most).
            if let Some((i, small)) = p
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, b)| (i, b.capacity()))
                && small < cap
            {
                p[i] = v;
            }
            return;
        }
        p.push(v);
    });
}

/// Recycles a tensor's memory if it is an `f32`, `u8` or `i8` tensor.
pub(crate) fn recycle(t: Tensor) {
    match t {
        Tensor::F32(a) if a.len() >= MIN_LEN => give(a.into_raw_vec_and_offset().0),
        Tensor::U8(a) if a.len() >= MIN_LEN => give(a.into_raw_vec_and_offset().0),
        Tensor::I8(a) if a.len() >= MIN_LEN => give(a.into_raw_vec_and_offset().0),
        _ => {}
    }
}

/// An `f32` tensor of `shape` from `data` (whose length must be the shape's product).
pub(crate) fn f32_tensor(shape: &[usize], data: Vec<f32>) -> crate::Result<Tensor> {
    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data)
        .map(Tensor::F32)
        .map_err(|e| crate::Error::ShapeMismatch(format!("internal: output shape: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_blocks_are_zeroed_and_bounded() {
        let mut v = take_f32(10_000);
        v.iter_mut().for_each(|x| *x = 7.0);
        give_f32(v);
        let w = take_f32(9_000);
        assert_eq!(w.len(), 9_000);
        assert!(w.iter().all(|&x| x == 0.0));
        let mut v = take_f32(10_000);
        v.iter_mut().for_each(|x| *x = 3.0);
        give_f32(v);
        let o = take_f32_overwritten(6_000);
        assert_eq!(o.len(), 6_000);
        give_f32(o);
        let e = take_f32_empty(5_000);
        assert!(e.is_empty() && e.capacity() >= 5_000);
        for _ in 0..(MAX_BUFFERS * 2) {
            give_f32(Vec::with_capacity(MIN_LEN));
        }
        POOL.with(|p| assert!(p.borrow().len() <= MAX_BUFFERS));
    }

    #[test]
    fn quantized_blocks_are_recycled_per_type() {
        let v = vec![9u8; 8_000];
        let p = v.as_ptr();
        recycle(Tensor::U8(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[8_000]), v).unwrap(),
        ));
        // An i8 request does not get the u8 block; a u8 one does, with the old values.
        let i: Vec<i8> = take_overwritten(7_000);
        assert!(i.len() == 7_000 && i.iter().all(|&x| x == 0));
        let u: Vec<u8> = take_overwritten(7_000);
        assert_eq!(u.as_ptr(), p);
        assert!(u.len() == 7_000 && u.iter().all(|&x| x == 9));
        // Longer than the block's old length: the tail is the default.
        give(u);
        let u: Vec<u8> = take_overwritten(7_900);
        assert!(u[..7_000].iter().all(|&x| x == 9) && u[7_000..].iter().all(|&x| x == 0));
        // Small requests are not served from the pool.
        let s: Vec<u8> = take_overwritten(100);
        assert!(s.len() == 100 && s.iter().all(|&x| x == 0));
    }
}
