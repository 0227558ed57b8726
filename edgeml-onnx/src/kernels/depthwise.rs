//! Direct 2-D depthwise convolution of one plane (one input channel, one filter).
//!
//! The padded input plane is split into `sh × sw` stride phases (phase `(a, b)` holds
//! padded rows `a, a+sh, …` and columns `b, b+sw, …`), after which every filter tap is a
//! constant shift of one phase plane: the whole output plane (computed `wq` columns
//! wide, the extra columns discarded) accumulates `w·phase[shift..]` in one long, flat,
//! vectorisable pass per tap, whatever the stride, dilation or padding. The portable
//! code is compiled once per ISA with the matching target features (AVX-512F, AVX2+FMA;
//! NEON is aarch64's baseline), so the loops are vectorised by the compiler.
#![allow(unsafe_code)]

use super::Isa;

/// The geometry of a 2-D depthwise convolution (a 1-D one has `h = oh = kh = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseGeo {
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride along the height (≥ 1).
    pub sh: usize,
    /// Stride along the width (≥ 1).
    pub sw: usize,
    /// Dilation along the height (≥ 1).
    pub dh: usize,
    /// Dilation along the width (≥ 1).
    pub dw: usize,
    /// Zero rows added above the input.
    pub pt: usize,
    /// Zero columns added left of the input.
    pub pl: usize,
}

impl DepthwiseGeo {
    /// `(wq, plane_len, flat_len)`: phase-plane row pitch, phase-plane length, and the
    /// flat accumulator length `oh·wq`.
    fn layout(&self) -> (usize, usize, usize) {
        let hp =
            (self.pt + self.h).max((self.oh.max(1) - 1) * self.sh + (self.kh - 1) * self.dh + 1);
        let wp =
            (self.pl + self.w).max((self.ow.max(1) - 1) * self.sw + (self.kw - 1) * self.dw + 1);
        let (hq, wq) = (hp.div_ceil(self.sh), wp.div_ceil(self.sw));
        let flat = self.oh * wq;
        let shift_max =
            ((self.kh - 1) * self.dh / self.sh) * wq + (self.kw - 1) * self.dw / self.sw;
        (wq, (hq * wq).max(flat + shift_max), flat)
    }

    /// Whether the geometry is usable (positive strides, dilations and kernel).
    fn valid(&self) -> bool {
        self.sh > 0 && self.sw > 0 && self.dh > 0 && self.dw > 0 && self.kh > 0 && self.kw > 0
    }
}

/// `out = conv(x, w) + bias` for one plane: `x` is `h × w`, `w` is `kh × kw`, `out` is
/// `oh × ow` (all row-major). `scratch` is reused between calls (grown as needed).
///
/// Accumulates in `f32`, taps in row-major kernel order, the bias first.
///
/// # Panics
/// Never for consistent inputs; slices shorter than the geometry says panic (they are
/// sized by the caller from the same geometry).
pub fn depthwise_plane(
    isa: Isa,
    x: &[f32],
    w: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    assert!(
        g.valid(),
        "depthwise geometry with a zero stride, dilation or kernel"
    );
    assert!(x.len() >= g.h * g.w && w.len() >= g.kh * g.kw && out.len() >= g.oh * g.ow);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            // SAFETY: the CPU supports AVX-512F (checked just above); the function body
            // is safe Rust with bounds-checked slices.
            unsafe { plane_avx512(x, w, bias, g, scratch, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if Isa::Avx2.is_available() => {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above); the body is safe
            // Rust with bounds-checked slices.
            unsafe { plane_avx2(x, w, bias, g, scratch, out) }
        }
        _ => plane(x, w, bias, g, scratch, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(
    x: &[f32],
    w: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    plane(x, w, bias, g, scratch, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(
    x: &[f32],
    w: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    plane(x, w, bias, g, scratch, out)
}

#[inline(always)]
fn plane(
    x: &[f32],
    wts: &[f32],
    bias: f32,
    g: &DepthwiseGeo,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (wq, plen, flat) = g.layout();
    let phases = g.sh * g.sw;
    let need = phases * plen + flat;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (ph, acc) = scratch[..need].split_at_mut(phases * plen);
    // Phase planes of the zero-padded input.
    for a in 0..g.sh {
        for b in 0..g.sw {
            let pp = &mut ph[(a * g.sw + b) * plen..][..plen];
            // Columns j of this phase read input column j·sw + b - pl: valid for j in jlo..jhi.
            let jlo = g.pl.saturating_sub(b).div_ceil(g.sw);
            let jhi = if g.pl + g.w > b {
                (g.pl + g.w - b).div_ceil(g.sw).min(wq)
            } else {
                0
            }
            .max(jlo);
            for (i, row) in pp.chunks_mut(wq).enumerate() {
                let r = i * g.sh + a;
                if r < g.pt || r - g.pt >= g.h || jlo >= jhi {
                    row.fill(0.0);
                    continue;
                }
                let src = &x[(r - g.pt) * g.w..][..g.w];
                let jhi = jhi.min(row.len());
                let jlo = jlo.min(jhi);
                row[..jlo].fill(0.0);
                row[jhi..].fill(0.0);
                let c0 = jlo * g.sw + b - g.pl;
                gather(&mut row[jlo..jhi], &src[c0..], g.sw);
            }
        }
    }
    acc.fill(bias);
    for kh in 0..g.kh {
        let (a, rs) = ((kh * g.dh) % g.sh, (kh * g.dh) / g.sh);
        for kw in 0..g.kw {
            let (b, cs) = ((kw * g.dw) % g.sw, (kw * g.dw) / g.sw);
            let wv = wts[kh * g.kw + kw];
            let src = &ph[(a * g.sw + b) * plen + rs * wq + cs..][..flat];
            for (d, &s) in acc.iter_mut().zip(src) {
                *d += wv * s;
            }
        }
    }
    if g.ow == 0 {
        return;
    }
    for (orow, arow) in out[..g.oh * g.ow]
        .chunks_exact_mut(g.ow)
        .zip(acc.chunks_exact(wq))
    {
        orow.copy_from_slice(&arow[..g.ow]);
    }
}

/// `dst[j] = src[j·step]` for every `j` (`src` must be long enough), with the common
/// steps 1 and 2 in forms the compiler vectorises.
#[inline(always)]
pub fn gather(dst: &mut [f32], src: &[f32], step: usize) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    match step {
        1 => dst.copy_from_slice(&src[..n]),
        2 => {
            // Pairs (src[2j], src[2j+1]) for j < n-1, then the last element alone (its
            // odd partner may lie past the end of `src`).
            let (body, last) = dst.split_at_mut(n - 1);
            for (d, pair) in body.iter_mut().zip(src[..2 * (n - 1)].chunks_exact(2)) {
                *d = pair[0];
            }
            last[0] = src[2 * (n - 1)];
        }
        _ => {
            for (d, &s) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = s;
            }
        }
    }
}
