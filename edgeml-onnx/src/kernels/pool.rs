//! Row kernels for MaxPool / AveragePool over `NCHW` planes.
//!
//! A pooled output row is computed in two passes (see `ops::nn::pool`):
//! [`pool_rows`] combines the kernel's input rows element-wise into one row, then
//! [`pool_taps`] combines, for each output, its `k` consecutive taps of that row taken
//! at stride `s`. Both are SIMD on AVX-512F, AVX2 and NEON; stride 2 deinterleaves in
//! registers (`vpermt2ps` / `shuffle`+`permute` / `ld2`) instead of a separate pass.
//! The common 3-wide, stride-2 window (unit dilation) has a fused kernel on AVX-512F and
//! AVX2 ([`pool_planes_k3s2`]): both passes in registers, whole planes per call.
//!
//! Every ISA combines values in the same order as the scalar code, with the same
//! operation, so results are bit-identical across ISAs: max is `if v > a { v } else { a }`
//! starting from `f32::MIN` (NaN taps are skipped, `-inf` taps give `f32::MIN`), sums
//! start from `0.0` and add in row / tap order.
#![allow(unsafe_code)]

use super::Isa;

/// `$f::<true>(args)` when `$max`, else `$f::<false>(args)`.
macro_rules! by_max {
    ($max:expr, $($f:ident)::+ ($($arg:expr),* $(,)?)) => {
        if $max {
            $($f)::+::<true>($($arg),*)
        } else {
            $($f)::+::<false>($($arg),*)
        }
    };
}

/// `acc[i] = combine(rows[0][i], rows[1][i], …)` for `i < n`, `n` the shortest of `acc`
/// and the rows: the largest (max, from `f32::MIN`) or the sum (from `0.0`), in row order.
pub(crate) fn pool_rows(isa: Isa, max: bool, rows: &[&[f32]], acc: &mut [f32]) {
    let n = rows.iter().map(|r| r.len()).fold(acc.len(), usize::min);
    let acc = &mut acc[..n];
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            // SAFETY: AVX-512F is available; every row holds ≥ n floats, `acc` holds n.
            unsafe { by_max!(max, x86::rows_avx512(rows, acc)) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => {
            // SAFETY: AVX2 is available; every row holds ≥ n floats, `acc` holds n.
            unsafe { by_max!(max, x86::rows_avx2(rows, acc)) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() => {
            // SAFETY: NEON is available; every row holds ≥ n floats, `acc` holds n.
            unsafe { by_max!(max, arm::rows_neon(rows, acc)) }
        }
        _ => by_max!(max, rows_scalar(rows, acc, 0)),
    }
}

/// `out[j] = combine(acc[start + s·j + kw] for kw in 0..k)` (max from `f32::MIN`, or
/// the sum from `0.0` divided by `div`), for every `j < out.len()`.
///
/// # Panics
/// When a tap lies past the end of `acc` or `k == 0` or `s == 0` (caller bugs).
pub(crate) fn pool_taps(isa: Isa, max: bool, acc: &[f32], taps: Taps, div: f32, out: &mut [f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let Taps { start, k, s } = taps;
    assert!(k > 0 && s > 0, "pool_taps: k and s must be positive");
    let last = (n - 1)
        .checked_mul(s)
        .and_then(|x| x.checked_add(start + k - 1));
    assert!(
        last.is_some_and(|l| l < acc.len()),
        "pool_taps: taps past the row"
    );
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() && s <= 2 => {
            // SAFETY: AVX-512F is available; every tap index is < acc.len() (checked).
            unsafe { by_max!(max, x86::taps_avx512(acc, taps, div, out)) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() && s <= 2 => {
            // SAFETY: AVX2 is available; the kernel checks each vector's reads against
            // acc.len() and leaves the rest to the scalar loop.
            unsafe { by_max!(max, x86::taps_avx2(acc, taps, div, out)) }
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() && s <= 2 => {
            // SAFETY: NEON is available; the kernel checks each vector's reads against
            // acc.len() and leaves the rest to the scalar loop.
            unsafe { by_max!(max, arm::taps_neon(acc, taps, div, out)) }
        }
        _ => 0,
    };
    by_max!(max, taps_scalar(acc, taps, div, out, done))
}

/// One output row for [`pool_planes_k3s2`]: its input rows are `x[first + i·step ..]`
/// for `i < n` (in kernel order), and averages divide by `div`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowSpec {
    /// Offset of the first input row.
    pub(crate) first: usize,
    /// Input rows (0 when the window is all padding).
    pub(crate) n: usize,
    /// Divisor of the average.
    pub(crate) div: f32,
}

/// Pools whole planes with a 3-wide, stride-2 window (unit dilation) along the rows, in
/// one call: `x` holds planes of `in_len` floats and `out` (whose length sets the number
/// of planes) planes of `out_len`. In every plane, for output row `r` (`specs[r]`) and
/// `j < len`, `out[r·out_w + f0 + j] = combine(V(start + 2j), V(start + 2j + 1),
/// V(start + 2j + 2))` where `V(c)` combines column `c` of the row's input rows (rows `w`
/// wide, `step` apart). Same order and results as [`pool_rows`] then [`pool_taps`], with
/// both passes fused in registers. Returns `false` (and does nothing) when `isa` has no
/// fused kernel or the geometry does not fit the slices.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool_planes_k3s2(
    isa: Isa,
    max: bool,
    (x, in_len): (&[f32], usize),
    (w, step): (usize, usize),
    specs: &[RowSpec],
    start: usize,
    (out, out_len): (&mut [f32], usize),
    (out_w, f0, len): (usize, usize, usize),
) -> bool {
    if len == 0 || specs.is_empty() || out_len == 0 {
        return true;
    }
    let planes = out.len() / out_len;
    let fits_in = specs.iter().all(|s| {
        s.n == 0
            || (s.n - 1)
                .checked_mul(step)
                .and_then(|v| v.checked_add(s.first)?.checked_add(w))
                .is_some_and(|end| end <= in_len)
    }) && planes.checked_mul(in_len).is_some_and(|n| n <= x.len());
    let fits_out = (specs.len() - 1)
        .checked_mul(out_w)
        .and_then(|v| v.checked_add(f0 + len))
        .is_some_and(|end| end <= out_len && f0 + len <= out_w);
    let taps_in = (len - 1)
        .checked_mul(2)
        .and_then(|v| v.checked_add(start + 2))
        .is_some_and(|last| last < w);
    if !(fits_in && fits_out && taps_in) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // One fused plane kernel per (ISA, max) pair; each is a `#[target_feature]`
        // function, called through the pointer once per plane.
        type Plane = unsafe fn(&[f32], x86::PlaneGeo, &[RowSpec], &mut [f32]);
        let plane: Plane = match (isa, max) {
            (Isa::Avx512, true) if isa.is_available() => x86::plane_k3s2_avx512::<true>,
            (Isa::Avx512, false) if isa.is_available() => x86::plane_k3s2_avx512::<false>,
            (Isa::Avx2, true) if isa.is_available() => x86::plane_k3s2_avx2::<true>,
            (Isa::Avx2, false) if isa.is_available() => x86::plane_k3s2_avx2::<false>,
            _ => return false,
        };
        let geo = x86::PlaneGeo {
            w,
            step,
            start,
            out_w,
            f0,
            len,
        };
        for (p, o) in out.chunks_exact_mut(out_len).enumerate() {
            let xp = &x[p * in_len..][..in_len];
            // SAFETY: `plane` was picked only when its ISA is available; the geometry
            // was checked against the planes just above (every row read, every tap and
            // every output is inside).
            unsafe { plane(xp, geo, specs, o) }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, max);
        false
    }
}

/// Where the taps of output `j` are: `acc[start + s·j + kw]`, `kw < k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taps {
    /// Index of output 0's first tap.
    pub(crate) start: usize,
    /// Taps per output (kernel width).
    pub(crate) k: usize,
    /// Stride between outputs.
    pub(crate) s: usize,
}

#[inline(always)]
fn comb<const MAX: bool>(v: f32, a: f32) -> f32 {
    if MAX {
        if v > a { v } else { a }
    } else {
        a + v
    }
}

#[inline(always)]
fn init<const MAX: bool>() -> f32 {
    if MAX { f32::MIN } else { 0.0 }
}

/// Scalar [`pool_rows`] from element `from` on.
fn rows_scalar<const MAX: bool>(rows: &[&[f32]], acc: &mut [f32], from: usize) {
    acc[from..].fill(init::<MAX>());
    for r in rows {
        for (a, &v) in acc[from..].iter_mut().zip(&r[from..]) {
            *a = comb::<MAX>(v, *a);
        }
    }
}

/// Scalar [`pool_taps`] from output `from` on.
fn taps_scalar<const MAX: bool>(acc: &[f32], t: Taps, div: f32, out: &mut [f32], from: usize) {
    for (j, o) in out.iter_mut().enumerate().skip(from) {
        let row = &acc[t.start + t.s * j..][..t.k];
        let v = row.iter().fold(init::<MAX>(), |a, &v| comb::<MAX>(v, a));
        *o = if MAX { v } else { v / div };
    }
}

/// A `pool_rows` kernel over the `$ops` module's vectors (`$ops::L` lanes, full vectors
/// only; the scalar loop finishes the row). One body for AVX2 and NEON, expanded inside
/// each `#[target_feature]` function so every op inlines.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! rows_kernel {
    ($(#[$m:meta])* $name:ident, $feat:literal, $ops:ident) => {
        $(#[$m])*
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const MAX: bool>(rows: &[&[f32]], acc: &mut [f32]) {
            const L: usize = $ops::L;
            let n = acc.len();
            let init = $ops::set1(init::<MAX>());
            let mut i = 0;
            while i + L <= n {
                let mut a = init;
                for r in rows {
                    // SAFETY: i + L ≤ n ≤ r.len().
                    let v = unsafe { $ops::loadu(r.as_ptr().add(i)) };
                    a = $ops::comb::<MAX>(v, a);
                }
                // SAFETY: i + L ≤ acc.len().
                unsafe { $ops::storeu(acc.as_mut_ptr().add(i), a) };
                i += L;
            }
            rows_scalar::<MAX>(rows, acc, i);
        }
    };
}

/// A `pool_taps` kernel over the `$ops` module's vectors (full vectors only); returns
/// how many leading outputs were done (the rest is the scalar loop's). Needs `t.s ≤ 2`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! taps_kernel {
    ($(#[$m:meta])* $name:ident, $feat:literal, $ops:ident) => {
        $(#[$m])*
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const MAX: bool>(
            acc: &[f32],
            t: Taps,
            div: f32,
            out: &mut [f32],
        ) -> usize {
            const L: usize = $ops::L;
            let (n, len, p) = (out.len(), acc.len(), acc.as_ptr());
            let (init, dv) = ($ops::set1(init::<MAX>()), $ops::set1(div));
            // Floats read per tap vector.
            let width = L * t.s;
            let mut j = 0;
            while j + L <= n && t.start + t.s * j + t.k - 1 + width <= len {
                let mut o = init;
                for kw in 0..t.k {
                    let base = t.start + t.s * j + kw;
                    // SAFETY: base + width ≤ len (loop condition).
                    let v = unsafe {
                        if t.s == 1 {
                            $ops::loadu(p.add(base))
                        } else {
                            $ops::load_even(p.add(base))
                        }
                    };
                    o = $ops::comb::<MAX>(v, o);
                }
                if !MAX {
                    o = $ops::div(o, dv);
                }
                // SAFETY: j + L ≤ n.
                unsafe { $ops::storeu(out.as_mut_ptr().add(j), o) };
                j += L;
            }
            j
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
mod arm;

#[cfg(test)]
mod tests;
