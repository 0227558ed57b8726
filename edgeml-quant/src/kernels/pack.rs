//! Packing of B (once) and preparation of A (per call), with the sums that fold the
//! zero points; and the short-run copy and fill that build im2col rows.

use super::Geom;
use ndarray::ArrayView2;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
}

/// An 8-bit quantized element type (`u8` or `i8`). Sealed.
pub trait QElem:
    sealed::Sealed + edgeml_onnx::buffers::Pooled + Copy + Send + Sync + core::fmt::Debug + 'static
{
    /// `"u8"` or `"i8"`.
    const NAME: &'static str;
    /// Whether the type is signed.
    const SIGNED: bool;
    /// The value mapped to `u8` by an offset (`i8` + 128), as A operands are stored.
    fn to_a(self) -> u8;
    /// The value mapped to `i8` by an offset (`u8` − 128), as B operands are stored.
    fn to_b(self) -> i8;
    /// The plain integer value.
    fn to_i32(self) -> i32;
    /// Converts a value already clamped to this type's range.
    fn from_i32_clamped(v: i32) -> Self;
    /// The type's range.
    const RANGE: (i32, i32);
}

impl QElem for u8 {
    const NAME: &'static str = "u8";
    const SIGNED: bool = false;
    const RANGE: (i32, i32) = (0, 255);
    #[inline(always)]
    fn to_a(self) -> u8 {
        self
    }
    #[inline(always)]
    fn to_b(self) -> i8 {
        (self ^ 0x80) as i8
    }
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    #[inline(always)]
    fn from_i32_clamped(v: i32) -> Self {
        v as u8
    }
}

impl QElem for i8 {
    const NAME: &'static str = "i8";
    const SIGNED: bool = true;
    const RANGE: (i32, i32) = (-128, 127);
    #[inline(always)]
    fn to_a(self) -> u8 {
        (self as u8) ^ 0x80
    }
    #[inline(always)]
    fn to_b(self) -> i8 {
        self
    }
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    #[inline(always)]
    fn from_i32_clamped(v: i32) -> Self {
        v as i8
    }
}

/// The zero point of an A operand after the offset of [`QElem::to_a`].
pub(crate) fn a_zp<T: QElem>(z: T) -> i32 {
    i32::from(z.to_a())
}

/// The zero point of a B operand after the offset of [`QElem::to_b`].
pub(crate) fn b_zp<T: QElem>(z: T) -> i32 {
    i32::from(z.to_b())
}

/// Zeroed bytes whose first lies on a 64-byte boundary (a cache line), so that no
/// 64-byte vector load or tile row of a packed operand straddles two lines, which can
/// cost a load twice the time. (A large `Vec<u8>` from the system allocator starts 16
/// bytes past a page boundary.)
#[derive(Debug)]
pub(crate) struct Aligned {
    v: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Aligned {
        let v = vec![0u8; len + 63];
        let at = v.as_ptr().align_offset(64).min(63);
        Aligned { v, at, len }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.v[self.at..self.at + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.v[self.at..self.at + self.len]
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Clone for Aligned {
    /// A copy with its own alignment (a cloned `Vec` may start elsewhere in a line).
    fn clone(&self) -> Aligned {
        let mut c = Aligned::zeroed(self.len);
        c.as_mut_slice().copy_from_slice(self.as_slice());
        c
    }
}

/// Packed operand storage.
#[derive(Debug, Clone)]
pub(crate) enum Buf<'a> {
    Borrowed(&'a [u8]),
    B8(Aligned),
    B16(Vec<i16>),
}

impl Buf<'_> {
    pub(crate) fn ptr(&self) -> *const u8 {
        match self {
            Buf::Borrowed(s) => s.as_ptr(),
            Buf::B8(v) => v.as_slice().as_ptr(),
            Buf::B16(v) => v.as_ptr().cast(),
        }
    }

    pub(crate) fn len_bytes(&self) -> usize {
        match self {
            Buf::Borrowed(s) => s.len(),
            Buf::B8(v) => v.len(),
            Buf::B16(v) => 2 * v.len(),
        }
    }
}

/// K rounded up to the geometry's K alignment.
pub(crate) fn kpad(g: Geom, k: usize) -> usize {
    k.div_ceil(g.kal) * g.kal
}

/// Packs B (`k × n`, values already mapped by [`QElem::to_b`]) into panels of `nr`
/// columns: element `(k, n)` of panel `p = n / nr` at
/// `p·kp·nr + (k / ks)·nr·ks + (n % nr)·ks + k % ks`; padding is 0.
/// Returns the storage and the column sums of `B'`.
pub(crate) fn pack_b<T: QElem>(g: Geom, b: ArrayView2<'_, T>) -> (Buf<'static>, Vec<i32>) {
    let (k, n) = b.dim();
    let kp = kpad(g, k);
    let panels = n.div_ceil(g.nr);
    let len = panels * kp * g.nr;
    let mut colsum = vec![0i32; n];
    let idx = |kk: usize, nn: usize| {
        (nn / g.nr) * kp * g.nr + (kk / g.ks) * g.nr * g.ks + (nn % g.nr) * g.ks + kk % g.ks
    };
    if g.wide {
        let mut v = vec![0i16; len];
        for ((kk, nn), &x) in b.indexed_iter() {
            let x = x.to_b();
            v[idx(kk, nn)] = i16::from(x);
            colsum[nn] = colsum[nn].wrapping_add(i32::from(x));
        }
        (Buf::B16(v), colsum)
    } else {
        let mut a = Aligned::zeroed(len);
        let v = a.as_mut_slice();
        for ((kk, nn), &x) in b.indexed_iter() {
            let x = x.to_b();
            v[idx(kk, nn)] = x as u8;
            colsum[nn] = colsum[nn].wrapping_add(i32::from(x));
        }
        (Buf::B8(a), colsum)
    }
}

/// A prepared for the kernels: row-major, `lda ≥ kp` elements per row, zero-padded.
pub(crate) struct PrepA<'a> {
    pub(crate) buf: Buf<'a>,
    pub(crate) lda: usize,
    /// `−rowsum(A')` per row (empty when not needed: all weight zero points are 0).
    pub(crate) rowterm: Vec<i32>,
}

/// Prepares A (`m × k`): borrows it when it is contiguous `u8` and already in the
/// kernel's format, otherwise copies it once (offset, widened or padded as needed;
/// 8-bit copies go into `scratch`, grown as needed and reused by the caller).
pub(crate) fn prep_a<'a, T: QElem>(
    g: Geom,
    a: ArrayView2<'a, T>,
    need_rowsums: bool,
    scratch: &'a mut Aligned,
) -> PrepA<'a> {
    let (m, k) = a.dim();
    let kp = kpad(g, k);
    let mut rowterm = Vec::new();
    if need_rowsums {
        rowterm.reserve(m);
        for row in a.rows() {
            let s = match row.as_slice() {
                Some(sl) if !T::SIGNED => as_bytes(sl)
                    .iter()
                    .fold(0u32, |s, &x| s.wrapping_add(u32::from(x)))
                    as i32,
                _ => row
                    .iter()
                    .fold(0i32, |s, &x| s.wrapping_add(i32::from(x.to_a()))),
            };
            rowterm.push(s.wrapping_neg());
        }
    }
    if !T::SIGNED
        && !g.wide
        && !g.a_xor
        && kp == k
        && let Some(s) = a.to_slice()
    {
        return PrepA {
            buf: Buf::Borrowed(as_bytes(s)),
            lda: k,
            rowterm,
        };
    }
    let lda = kp;
    if g.wide {
        let mut v = vec![0i16; m * lda];
        for (dst, row) in v.chunks_exact_mut(lda.max(1)).zip(a.rows()) {
            for (d, &x) in dst.iter_mut().zip(row.iter()) {
                *d = i16::from(x.to_a());
            }
        }
        PrepA {
            buf: Buf::B16(v),
            lda,
            rowterm,
        }
    } else {
        let xor = if g.a_xor { 0x80 } else { 0 };
        if scratch.len() < m * lda {
            *scratch = Aligned::zeroed(m * lda);
        }
        let v = &mut scratch.as_mut_slice()[..m * lda];
        for (dst, row) in v.chunks_exact_mut(lda.max(1)).zip(a.rows()) {
            // The padding past k multiplies B's zero rows; it is zeroed all the same,
            // since the buffer is reused.
            let (head, pad) = dst.split_at_mut(k.min(lda));
            match row.as_slice() {
                Some(r) => head
                    .iter_mut()
                    .zip(r)
                    .for_each(|(d, &x)| *d = x.to_a() ^ xor),
                None => head
                    .iter_mut()
                    .zip(row.iter())
                    .for_each(|(d, &x)| *d = x.to_a() ^ xor),
            }
            pad.fill(0);
        }
        PrepA {
            buf: Buf::Borrowed(&scratch.as_slice()[..m * lda]),
            lda,
            rowterm,
        }
    }
}

/// Views a slice of an 8-bit element type as bytes (only for `u8`, where the view is the
/// identity of [`QElem::to_a`]).
pub(crate) fn as_bytes<T: QElem>(s: &[T]) -> &[u8] {
    const { assert!(core::mem::size_of::<T>() == 1) };
    // SAFETY: T is u8 or i8 (sealed): size 1, alignment 1, no padding, every bit
    // pattern valid; the returned slice borrows the same memory for the same lifetime.
    unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) }
}

/// A standard-layout 4-D view of an 8-bit element type as `u8` (`Ok`) or `i8` (`Err`),
/// whichever it is; `None` if the view is not in standard layout.
#[allow(clippy::type_complexity)]
pub(crate) fn split_view<'a, O: QElem>(
    mut v: ndarray::ArrayViewMut4<'a, O>,
) -> Option<Result<ndarray::ArrayViewMut4<'a, u8>, ndarray::ArrayViewMut4<'a, i8>>> {
    const { assert!(core::mem::size_of::<O>() == 1) };
    let dim = v.raw_dim();
    let len = v.len();
    v.as_slice_mut()?;
    let ptr = v.as_mut_ptr();
    // The view is contiguous (checked above) and uniquely borrowed for 'a.
    if O::SIGNED {
        // SAFETY: sealed: a signed QElem is i8 (same size, alignment and validity); the
        // `len` elements at `ptr` are the view's contiguous, uniquely borrowed memory.
        let s = unsafe { core::slice::from_raw_parts_mut(ptr.cast::<i8>(), len) };
        ndarray::ArrayViewMut4::from_shape(dim, s).ok().map(Err)
    } else {
        // SAFETY: as above; an unsigned QElem is u8.
        let s = unsafe { core::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        ndarray::ArrayViewMut4::from_shape(dim, s).ok().map(Ok)
    }
}

/// The values of `x` mapped by [`QElem::to_a`]: borrowed for `u8`, copied for `i8`.
pub(crate) fn a_bytes<T: QElem>(x: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if T::SIGNED {
        std::borrow::Cow::Owned(x.iter().map(|v| v.to_a()).collect())
    } else {
        std::borrow::Cow::Borrowed(as_bytes(x))
    }
}

/// The raw bytes of an 8-bit element slice (u8 or i8: size 1, no padding).
pub(crate) fn raw_bytes<T: QElem>(s: &[T]) -> &[u8] {
    const { assert!(core::mem::size_of::<T>() == 1) };
    // SAFETY: T is u8 or i8 (sealed): size and alignment 1, every bit pattern valid;
    // the byte slice borrows the same memory for the same lifetime.
    unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len()) }
}

/// A mutable byte slice viewed as an 8-bit element type.
pub(crate) fn from_raw_bytes_mut<T: QElem>(s: &mut [u8]) -> &mut [T] {
    const { assert!(core::mem::size_of::<T>() == 1) };
    // SAFETY: T is u8 or i8 (sealed): size and alignment 1, every bit pattern valid;
    // the unique borrow of `s` is transferred to the returned slice.
    unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<T>(), s.len()) }
}

/// The raw bytes of a mutable 8-bit element slice; any byte written is a valid `T`.
pub(crate) fn raw_bytes_mut<T: QElem>(s: &mut [T]) -> &mut [u8] {
    const { assert!(core::mem::size_of::<T>() == 1) };
    // SAFETY: as `raw_bytes`; every byte value is a valid u8 and i8, and the unique
    // borrow of `s` is transferred to the returned slice.
    unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), s.len()) }
}

/// `d.copy_from_slice(s)` (of the shorter length) for the few-byte runs of
/// small-channel im2col rows (a 3-channel stem copies 9 bytes per kernel row) without
/// a `memcpy` call per run: fixed-size moves, two overlapping ones for 8 to 16
/// elements; longer runs go to `copy_from_slice`.
#[inline(always)]
pub(crate) fn copy_small<T: Copy>(d: &mut [T], s: &[T]) {
    let n = d.len().min(s.len());
    match n {
        0 => {}
        1..8 => {
            for (d, &s) in d.iter_mut().zip(s) {
                *d = s;
            }
        }
        8..=16 => {
            d[..8].copy_from_slice(&s[..8]);
            d[n - 8..n].copy_from_slice(&s[n - 8..n]);
        }
        _ => d[..n].copy_from_slice(&s[..n]),
    }
}

/// `d.fill(v)` for short runs, without a `memset` call (see [`copy_small`]).
#[inline(always)]
pub(crate) fn fill_small<T: Copy>(d: &mut [T], v: T) {
    if d.len() <= 16 {
        for d in d.iter_mut() {
            *d = v;
        }
    } else {
        d.fill(v);
    }
}
