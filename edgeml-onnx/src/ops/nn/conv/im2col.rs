//! Convolution geometry, the im2col `B` operand packed straight into GEMM panels, and
//! the generic (3-D) depthwise fallback.

use crate::kernels::{DepthwiseGeo, PackB, gather};
use rayon::prelude::*;

/// Geometry of one convolution, with spatial dims left-padded to 3.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geo {
    pub(super) inp: [usize; 3],
    pub(super) out: [usize; 3],
    pub(super) k: [usize; 3],
    pub(super) s: [usize; 3],
    pub(super) d: [usize; 3],
    pub(super) p: [usize; 3],
}

impl Geo {
    pub(super) fn in_len(&self) -> usize {
        self.inp.iter().product()
    }
    pub(super) fn out_len(&self) -> usize {
        self.out.iter().product()
    }
    pub(super) fn k_len(&self) -> usize {
        self.k.iter().product()
    }

    /// The 2-D view for the direct depthwise kernel (`None` for a true 3-D convolution).
    pub(super) fn depthwise_2d(&self) -> Option<DepthwiseGeo> {
        (self.inp[0] == 1 && self.k[0] == 1 && self.out[0] == 1 && self.p[0] == 0).then_some(
            DepthwiseGeo {
                h: self.inp[1],
                w: self.inp[2],
                oh: self.out[1],
                ow: self.out[2],
                kh: self.k[1],
                kw: self.k[2],
                sh: self.s[1],
                sw: self.s[2],
                dh: self.d[1],
                dw: self.d[2],
                pt: self.p[1],
                pl: self.p[2],
            },
        )
    }
}

/// Output positions `o` along one axis whose input `o·s + off` lies in `0..n`.
pub(super) fn valid_range(off: isize, s: usize, n: usize, out: usize) -> (usize, usize) {
    let s = s as isize;
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    let hi = if n as isize - off <= 0 {
        0
    } else {
        (n as isize - off - 1) / s + 1
    };
    let lo = (lo as usize).min(out);
    let hi = (hi as usize).min(out).max(lo);
    (lo, hi)
}

/// The im2col matrix of one image group (`C·KD·KH·KW` rows × output positions), never
/// materialised: [`PackB::pack`] writes the requested block straight into GEMM panels.
pub(super) struct Im2colB<'a> {
    pub(super) x: &'a [f32],
    pub(super) geo: Geo,
    pub(super) channels: usize,
}

impl Im2colB<'_> {
    /// Writes columns `j0..j0 + dst.len()` of im2col row `r` into `dst`.
    fn row(&self, r: usize, j0: usize, dst: &mut [f32]) {
        let g = &self.geo;
        let [kd_n, kh_n, kw_n] = g.k;
        let [id_n, ih_n, iw_n] = g.inp;
        let [_, oh_n, ow_n] = g.out;
        let kw = r % kw_n;
        let kh = (r / kw_n) % kh_n;
        let kd = (r / (kw_n * kh_n)) % kd_n;
        let c = r / (kw_n * kh_n * kd_n);
        let in_len = id_n * ih_n * iw_n;
        let xc = &self.x[c * in_len..(c + 1) * in_len];
        let offs = [0, 1, 2].map(|a| ([kd, kh, kw][a] * g.d[a]) as isize - g.p[a] as isize);
        let (wlo, whi) = valid_range(offs[2], g.s[2], iw_n, ow_n);
        let mut t = j0 / ow_n;
        let mut ow = j0 % ow_n;
        let mut pos = 0;
        while pos < dst.len() {
            let len = (ow_n - ow).min(dst.len() - pos);
            let seg = &mut dst[pos..pos + len];
            let (od, oh) = (t / oh_n, t % oh_n);
            let id = (od * g.s[0]) as isize + offs[0];
            let ih = (oh * g.s[1]) as isize + offs[1];
            let lo = wlo.clamp(ow, ow + len);
            let hi = whi.clamp(lo, ow + len);
            if id < 0 || id >= id_n as isize || ih < 0 || ih >= ih_n as isize || lo == hi {
                seg.fill(0.0);
            } else {
                let src = &xc[(id as usize * ih_n + ih as usize) * iw_n..][..iw_n];
                seg[..lo - ow].fill(0.0);
                seg[hi - ow..].fill(0.0);
                let start = ((lo * g.s[2]) as isize + offs[2]) as usize;
                let body = &mut seg[lo - ow..hi - ow];
                gather(body, &src[start..], g.s[2]);
            }
            pos += len;
            ow = 0;
            t += 1;
        }
    }
}

impl PackB for Im2colB<'_> {
    fn rows(&self) -> usize {
        self.channels * self.geo.k_len()
    }

    fn cols(&self) -> usize {
        self.geo.out_len()
    }

    fn pack(&self, k0: usize, kcur: usize, j0: usize, jn: usize, nr: usize, out: &mut [f32]) {
        let panels = jn.div_ceil(nr);
        let mut stack = [0.0f32; 1024];
        let mut heap = Vec::new();
        let tmp: &mut [f32] = if panels * nr <= stack.len() {
            &mut stack[..panels * nr]
        } else {
            heap.resize(panels * nr, 0.0);
            &mut heap
        };
        tmp[jn..].fill(0.0);
        for kk in 0..kcur {
            self.row(k0 + kk, j0, &mut tmp[..jn]);
            for (p, src) in tmp.chunks_exact(nr).enumerate() {
                out[p * nr * kcur + kk * nr..][..nr].copy_from_slice(src);
            }
        }
    }
}

/// The im2col matrix of one image group for a 2-D convolution, as shifted slices of the
/// input split into stride phases (the layout of `kernels::depthwise_plane`).
///
/// Each channel is zero-padded and split into `sh × sw` phase planes of `hq × wq`
/// (phase `(a, b)` holds padded rows `a, a+sh, …` and columns `b, b+sw, …`). Output
/// position `(oh, ow)` and tap `(kh, kw)` then read phase `(kh·dh % sh, kw·dw % sw)` at
/// `(oh + kh·dh / sh, ow + kw·dw / sw)`, so im2col row `(c, kh, kw)` is the contiguous
/// run of that phase plane starting at a fixed offset, over a grid of `oh × wq`
/// columns of which the first `ow` of each row are real (the GEMM drops the rest:
/// `kernels::ColMap`). Packing a panel is then a plain copy of `nr` floats.
pub(super) struct ShiftB {
    buf: Vec<f32>,
    /// Start of each im2col row in `buf`.
    offs: Vec<usize>,
    /// Logical columns: `oh · wq`.
    cols: usize,
    /// Phase-plane row pitch.
    pub(super) wq: usize,
}

impl ShiftB {
    /// Whether the phase layout costs at most 1/4 more `nr`-wide GEMM panels than the
    /// output has columns (2-D only). E.g. a 3×3 pad-1 conv on 7×7 computes 7×9 = 63
    /// columns, four panels of 16 like the 49 real ones; on 10×10, 120 columns in eight
    /// panels against seven, which still pays: [`Im2colB`] builds each row from short
    /// segments, and on such planes that took as long as the products (256→64 channels
    /// on 10×10, AVX2). On 5×5 (35 columns: three panels of 16 against two) the rule
    /// keeps [`Im2colB`].
    pub(super) fn suits(g: &Geo, nr: usize) -> bool {
        let Some(d) = g.depthwise_2d() else {
            return false;
        };
        let wq = Self::dims(&d).1;
        let nr = nr.max(1);
        d.ow > 0 && (d.oh * wq).div_ceil(nr) * 4 <= (d.oh * d.ow).div_ceil(nr) * 5
    }

    /// `(hq, wq)`.
    fn dims(d: &DepthwiseGeo) -> (usize, usize) {
        let hp = (d.pt + d.h).max((d.oh.max(1) - 1) * d.sh + (d.kh - 1) * d.dh + 1);
        let wp = (d.pl + d.w).max((d.ow.max(1) - 1) * d.sw + (d.kw - 1) * d.dw + 1);
        (hp.div_ceil(d.sh), wp.div_ceil(d.sw))
    }

    /// Builds the phase planes of `channels` input planes `x` (each `h × w`); `nr` is
    /// the GEMM's panel width (rows are over-read by up to `nr - 1` columns).
    pub(super) fn new(x: &[f32], g: &Geo, channels: usize, nr: usize) -> Option<Self> {
        let d = g.depthwise_2d()?;
        let (hq, wq) = Self::dims(&d);
        let (sh, sw) = (d.sh, d.sw);
        let phase = hq * wq;
        // Only the phases some tap reads are stored (a strided 1×1 reads one of them),
        // `slot[a·sw + b]` numbering them.
        let mut slot = vec![usize::MAX; sh * sw];
        let mut used = 0;
        for kh in 0..d.kh {
            for kw in 0..d.kw {
                let p = ((kh * d.dh) % sh) * sw + (kw * d.dw) % sw;
                if slot[p] == usize::MAX {
                    slot[p] = used;
                    used += 1;
                }
            }
        }
        let plane = used * phase;
        let mut offs = Vec::with_capacity(channels * d.kh * d.kw);
        for c in 0..channels {
            for kh in 0..d.kh {
                for kw in 0..d.kw {
                    let (a, b) = ((kh * d.dh) % sh, (kw * d.dw) % sw);
                    let shift = ((kh * d.dh) / sh) * wq + (kw * d.dw) / sw;
                    offs.push(c * plane + slot[a * sw + b] * phase + shift);
                }
            }
        }
        let cols = d.oh * wq;
        // A panel starting at column j0 < cols reads up to j0 + jn.div_ceil(nr)·nr < cols + nr.
        let end = offs.iter().max().map_or(0, |&o| o + cols + nr);
        let total = (channels * plane).max(end);
        let mut buf = crate::buffers::take_f32_overwritten(total);
        buf[channels * plane..].fill(0.0);
        // Per column phase b: the first input column it takes (iw0, then iw0 + sw, …),
        // the phase column that lands in, and how many it takes; `None` if none.
        let colph: Vec<Option<(usize, usize, usize)>> = (0..sw)
            .map(|b| {
                let iw0 = (b + sw - d.pl % sw) % sw;
                (iw0 < d.w).then(|| (iw0, (iw0 + d.pl) / sw, (d.w - iw0).div_ceil(sw)))
            })
            .collect();
        // One task per channel: scatter the rows into the phases, then zero what the
        // scatter left (the padding), phase row by phase row (run serially, this pass
        // took a tenth of a 2-thread 3x3 conv). Row and phase indices advance by
        // counting: divisions per row were a tenth of this pass.
        let fill = |(c, dst): (usize, &mut [f32])| {
            let xc = &x[c * d.h * d.w..][..d.h * d.w];
            // Padded row ih + pt is row `row` of row phase `a`.
            let (mut a, mut row) = (d.pt % sh, d.pt / sh);
            for src in xc.chunks_exact(d.w) {
                for (b, cp) in colph.iter().enumerate() {
                    let sl = slot[a * sw + b];
                    let Some((iw0, c0, cnt)) = *cp else {
                        continue;
                    };
                    if sl == usize::MAX {
                        continue;
                    }
                    let out = &mut dst[sl * phase + row * wq + c0..][..cnt];
                    match sw {
                        1 => out.copy_from_slice(src),
                        2 => deinterleave2(&src[iw0..], out),
                        _ => {
                            for (q, &v) in out.iter_mut().zip(src[iw0..].iter().step_by(sw)) {
                                *q = v;
                            }
                        }
                    }
                }
                a += 1;
                if a == sh {
                    a = 0;
                    row += 1;
                }
            }
            // The zeros: of each stored phase row, the columns before and after those
            // the scatter wrote (all of it when no input row or column lands there).
            for a in 0..sh {
                for (b, cp) in colph.iter().enumerate() {
                    let sl = slot[a * sw + b];
                    if sl == usize::MAX {
                        continue;
                    }
                    let (c0, cnt) = cp.map_or((0, 0), |(_, c0, cnt)| (c0, cnt));
                    // Phase row `r` holds padded row `ph = r·sh + a`.
                    let mut ph = a;
                    for r in dst[sl * phase..][..hq * wq].chunks_exact_mut(wq) {
                        if cnt > 0 && ph >= d.pt && ph - d.pt < d.h {
                            r[..c0].fill(0.0);
                            r[c0 + cnt..].fill(0.0);
                        } else {
                            r.fill(0.0);
                        }
                        ph += sh;
                    }
                }
            }
        };
        if plane > 0 {
            buf[..channels * plane]
                .par_chunks_mut(plane)
                .enumerate()
                .with_min_len(crate::kernels::min_len_for(channels * plane).max(1))
                .for_each(fill);
        }
        Some(Self {
            buf,
            offs,
            cols,
            wq,
        })
    }
}

impl ShiftB {
    /// [`PackB::pack`] for panels `NR` wide.
    fn pack_n<const NR: usize>(&self, k0: usize, kcur: usize, j0: usize, out: &mut [f32]) {
        for (p, panel) in out.chunks_exact_mut(NR * kcur).enumerate() {
            let c0 = j0 + p * NR;
            let (rows, _) = panel.as_chunks_mut::<NR>();
            for (dst, &o) in rows.iter_mut().zip(&self.offs[k0..k0 + kcur]) {
                let (src, _) = self.buf[o + c0..].as_chunks::<NR>();
                *dst = src[0];
            }
        }
    }
}

impl Drop for ShiftB {
    fn drop(&mut self) {
        crate::buffers::give_f32(std::mem::take(&mut self.buf));
    }
}

impl PackB for ShiftB {
    fn rows(&self) -> usize {
        self.offs.len()
    }

    /// The phase planes and the start of each im2col row in them: row `r`'s logical
    /// column `j` is `planes[starts[r] + j]` (read in place by the sparse kernel).
    fn in_place_rows(&self) -> Option<(&[f32], &[usize])> {
        Some((&self.buf, &self.offs))
    }

    fn cols(&self) -> usize {
        self.cols
    }

    fn pack(&self, k0: usize, kcur: usize, j0: usize, _jn: usize, nr: usize, out: &mut [f32]) {
        // Columns past `jn` read the (finite) data that follows: their results are
        // discarded, as the trait allows.
        // Fixed-width copies for the kernels' panel widths: inline vector moves instead
        // of a `memcpy` call per 32 floats.
        match nr {
            32 => self.pack_n::<32>(k0, kcur, j0, out),
            16 => self.pack_n::<16>(k0, kcur, j0, out),
            8 => self.pack_n::<8>(k0, kcur, j0, out),
            _ => {
                for (p, panel) in out.chunks_exact_mut(nr * kcur).enumerate() {
                    let c0 = j0 + p * nr;
                    for (dst, &o) in panel.chunks_exact_mut(nr).zip(&self.offs[k0..k0 + kcur]) {
                        dst.copy_from_slice(&self.buf[o + c0..][..nr]);
                    }
                }
            }
        }
    }
}

/// `out[q] = src[2q]`: the even columns of a row (`src` holds at least
/// `2·out.len() − 1` values), in blocks of 16 that the compiler vectorizes for the
/// CPU's best ISA (AVX-512 permutes; baseline x86-64 code moves them one by one).
fn deinterleave2(src: &[f32], out: &mut [f32]) {
    struct Even<'a>(&'a [f32], &'a mut [f32]);
    impl crate::kernels::IsaBody for Even<'_> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let Even(src, out) = self;
            // Whole blocks of 16 outputs that have all 32 source values (the last
            // output's odd neighbour may lie past the end of `src`).
            let full = (out.len() / 16).min(src.len() / 32);
            let (blocks, _) = out[..16 * full].as_chunks_mut::<16>();
            let (pairs, _) = src[..32 * full].as_chunks::<32>();
            for (o, s) in blocks.iter_mut().zip(pairs) {
                *o = std::array::from_fn(|q| s[2 * q]);
            }
            for (q, o) in out.iter_mut().enumerate().skip(16 * full) {
                *o = src[2 * q];
            }
        }
    }
    crate::kernels::on_best_isa(Even(src, out));
}

/// Direct convolution of one input plane with one filter (groups of one channel), any
/// rank: the fallback for 3-D depthwise convolutions.
pub(super) fn depthwise_plane_nd(x: &[f32], w: &[f32], bias: f32, g: &Geo, out: &mut [f32]) {
    out.fill(bias);
    let [kd_n, kh_n, kw_n] = g.k;
    let [id_n, ih_n, iw_n] = g.inp;
    let [od_n, oh_n, ow_n] = g.out;
    for kd in 0..kd_n {
        for kh in 0..kh_n {
            for kw in 0..kw_n {
                let wv = w[(kd * kh_n + kh) * kw_n + kw];
                let offs = [
                    (kd * g.d[0]) as isize - g.p[0] as isize,
                    (kh * g.d[1]) as isize - g.p[1] as isize,
                    (kw * g.d[2]) as isize - g.p[2] as isize,
                ];
                let (dlo, dhi) = valid_range(offs[0], g.s[0], id_n, od_n);
                let (hlo, hhi) = valid_range(offs[1], g.s[1], ih_n, oh_n);
                let (wlo, whi) = valid_range(offs[2], g.s[2], iw_n, ow_n);
                if wlo >= whi {
                    continue;
                }
                for od in dlo..dhi {
                    let id = ((od * g.s[0]) as isize + offs[0]) as usize;
                    for oh in hlo..hhi {
                        let ih = ((oh * g.s[1]) as isize + offs[1]) as usize;
                        let src = &x[(id * ih_n + ih) * iw_n..][..iw_n];
                        let dst = &mut out[(od * oh_n + oh) * ow_n..][wlo..whi];
                        let start = ((wlo * g.s[2]) as isize + offs[2]) as usize;
                        for (d, &s) in dst.iter_mut().zip(src[start..].iter().step_by(g.s[2])) {
                            *d += wv * s;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn out_dim(n: usize, k: usize, s: usize, d: usize, p: usize) -> usize {
        (n + 2 * p).saturating_sub((k - 1) * d + 1) / s + 1
    }

    /// Packs a [`ShiftB`] of `c` planes `inp` and checks every packed element of the
    /// panels against the im2col definition (zero in the padding).
    #[allow(clippy::too_many_arguments)]
    fn check_shifted(
        c: usize,
        inp: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
        p: [usize; 2],
        nr: usize,
        kc: usize,
        j0f: f64,
    ) -> Result<(), TestCaseError> {
        let out = [0, 1].map(|a| out_dim(inp[a], k[a], s[a], d[a], p[a]));
        let geo = Geo {
            inp: [1, inp[0], inp[1]],
            out: [1, out[0], out[1]],
            k: [1, k[0], k[1]],
            s: [1, s[0], s[1]],
            d: [1, d[0], d[1]],
            p: [0, p[0], p[1]],
        };
        let x: Vec<f32> = (0..c * geo.in_len()).map(|i| i as f32 + 1.0).collect();
        let b = ShiftB::new(&x, &geo, c, nr).expect("2-D");
        let (rows, cols) = (b.rows(), b.cols());
        prop_assert_eq!(cols, out[0] * b.wq);
        let j0 = ((cols as f64) * j0f) as usize;
        let jn = cols - j0;
        let k0 = kc.min(rows) / 2;
        let kcur = kc.min(rows - k0);
        let mut packed = vec![f32::NAN; jn.div_ceil(nr) * nr * kcur];
        b.pack(k0, kcur, j0, jn, nr, &mut packed);
        for kk in 0..kcur {
            let r = k0 + kk;
            let (kw, kh, ch) = (r % k[1], (r / k[1]) % k[0], r / (k[0] * k[1]));
            for q in 0..jn {
                let j = j0 + q;
                let (oh, ow) = (j / b.wq, j % b.wq);
                let got = packed[(q / nr) * nr * kcur + kk * nr + q % nr];
                prop_assert!(got.is_finite());
                if ow >= out[1] {
                    continue;
                }
                let ih = (oh * s[0] + kh * d[0]) as isize - p[0] as isize;
                let iw = (ow * s[1] + kw * d[1]) as isize - p[1] as isize;
                let want = if ih >= 0 && iw >= 0 && (ih as usize) < inp[0] && (iw as usize) < inp[1]
                {
                    x[ch * geo.in_len() + ih as usize * inp[1] + iw as usize]
                } else {
                    0.0
                };
                prop_assert_eq!(got, want, "row {} col {}", r, j);
            }
        }
        Ok(())
    }

    /// The phase planes' padding is zeroed even in a recycled buffer full of NaN (the
    /// build writes every element once; planes this big come from the buffer pool).
    #[test]
    fn shifted_planes_zero_their_padding_in_a_recycled_buffer() {
        for (st, pad) in [(1, 1), (2, 1), (2, 0), (2, 2), (3, 1)] {
            crate::buffers::give_f32(vec![f32::NAN; 1 << 16]);
            check_shifted(
                3,
                [40, 70],
                [3, 3],
                [st, st],
                [1, 1],
                [pad, pad],
                32,
                27,
                0.0,
            )
            .unwrap_or_else(|e| panic!("stride {st} pad {pad}: {e}"));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Every packed element equals the im2col definition (zero in the padding).
        #[test]
        fn packed_panels_match_im2col_definition(
            c in 1usize..4, inp in prop::array::uniform3(1usize..9),
            k in prop::array::uniform3(1usize..4), s in prop::array::uniform3(1usize..3),
            d in prop::array::uniform3(1usize..3), p in prop::array::uniform3(0usize..3),
            nr in prop::sample::select(vec![4usize, 8, 16]), kc in 1usize..40, j0f in 0.0f64..1.0,
        ) {
            prop_assume!((0..3).all(|a| inp[a] + 2 * p[a] > (k[a] - 1) * d[a]));
            let out = [0, 1, 2].map(|a| out_dim(inp[a], k[a], s[a], d[a], p[a]));
            let geo = Geo { inp, out, k, s, d, p };
            let x: Vec<f32> = (0..c * geo.in_len()).map(|i| i as f32 + 1.0).collect();
            let b = Im2colB { x: &x, geo, channels: c };
            let (rows, cols) = (b.rows(), b.cols());
            let j0 = ((cols as f64) * j0f) as usize;
            let jn = cols - j0;
            let k0 = kc.min(rows) / 2;
            let kcur = kc.min(rows - k0);
            let mut packed = vec![f32::NAN; jn.div_ceil(nr) * nr * kcur];
            b.pack(k0, kcur, j0, jn, nr, &mut packed);
            for kk in 0..kcur {
                let r = k0 + kk;
                let (kw, kh, kd) = (r % k[2], (r / k[2]) % k[1], (r / (k[2] * k[1])) % k[0]);
                let ch = r / geo.k_len();
                for q in 0..jn.div_ceil(nr) * nr {
                    let got = packed[(q / nr) * nr * kcur + kk * nr + q % nr];
                    let want = if q >= jn {
                        0.0
                    } else {
                        let j = j0 + q;
                        let (ow, oh, od) = (j % out[2], (j / out[2]) % out[1], j / (out[2] * out[1]));
                        let pos = [od, oh, ow];
                        let tap = [kd, kh, kw];
                        let ix: Vec<isize> = (0..3)
                            .map(|a| (pos[a] * s[a] + tap[a] * d[a]) as isize - p[a] as isize)
                            .collect();
                        if (0..3).all(|a| ix[a] >= 0 && (ix[a] as usize) < inp[a]) {
                            let [i0, i1, i2] = [ix[0] as usize, ix[1] as usize, ix[2] as usize];
                            x[ch * geo.in_len() + (i0 * inp[1] + i1) * inp[2] + i2]
                        } else {
                            0.0
                        }
                    };
                    prop_assert_eq!(got, want, "row {} col {}", r, q);
                }
            }
        }

        /// The phase-plane operand: logical column `oh·wq + ow` (for `ow < out_w`) of
        /// every packed panel equals the im2col definition (zero in the padding).
        #[test]
        fn shifted_panels_match_im2col_definition(
            // rows up to 70 wide: the stride-2 phase split copies 16 columns at a time
            c in 1usize..4, inp in (1usize..12, 1usize..70).prop_map(|(h, w)| [h, w]),
            k in prop::array::uniform2(1usize..4), s in prop::array::uniform2(1usize..4),
            d in prop::array::uniform2(1usize..3), p in prop::array::uniform2(0usize..3),
            nr in prop::sample::select(vec![8usize, 16, 32]), kc in 1usize..40, j0f in 0.0f64..1.0,
        ) {
            prop_assume!((0..2).all(|a| inp[a] + 2 * p[a] > (k[a] - 1) * d[a]));
            check_shifted(c, inp, k, s, d, p, nr, kc, j0f)?;
        }
    }
}
