//! MaxPool, AveragePool (1-D to 3-D) and the global pools.

use super::{AutoPad, Window, checked_numel, contiguous, input_f32, tensor, to3};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::{Attrs, invalid, shape_mismatch, unsupported};
use crate::plan::budget::{Meter, Stop};
use crate::{Node, Result, Tensor};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

mod global;

use global::global_pool;
pub(super) use global::{build_global_average_pool, build_global_max_pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Average { count_include_pad: bool },
}

#[derive(Debug)]
struct Pool {
    node: Node,
    kind: Kind,
    window: Window,
    /// Column-major indices (`storage_order = 1`) for MaxPool's second output.
    col_major: bool,
}

fn build_pool(ctx: &BuildContext<'_>, kind: Kind) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let a = Attrs::new(node);
    let kernel = a
        .usizes_opt("kernel_shape")?
        .ok_or_else(|| invalid(node, "kernel_shape is required"))?;
    if kernel.is_empty() || kernel.len() > 3 {
        return Err(unsupported(
            node,
            format!("{}-D pooling (1-D to 3-D are supported)", kernel.len()),
        ));
    }
    let window = Window::from_node(node, kernel)?;
    Ok(Box::new(Pool {
        node: node.clone(),
        kind,
        window,
        col_major: a.int("storage_order", 0)? != 0,
    }))
}

pub(super) fn build_max_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build_pool(ctx, Kind::Max)
}

pub(super) fn build_average_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let cip = Attrs::new(ctx.node).int("count_include_pad", 0)? != 0;
    build_pool(
        ctx,
        Kind::Average {
            count_include_pad: cip,
        },
    )
}

impl Operator for Pool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input_f32(node, inputs, 0)?;
        let sp = self.window.kernel().len();
        if x.ndim() != sp + 2 {
            return Err(shape_mismatch(
                node,
                format!("input {:?} does not match a {sp}-D kernel", x.shape()),
            ));
        }
        let w = &self.window;
        let (out_sp, pb) = w.geometry(node, &x.shape()[2..])?;
        let pe: Vec<usize> = (0..sp)
            .map(|i| match w.auto_pad() {
                AutoPad::NotSet => w.pads()[sp + i],
                AutoPad::Valid => 0,
                _ => {
                    let eff = (w.kernel()[i] - 1) * w.dilations()[i] + 1;
                    ((out_sp[i].max(1) - 1) * w.strides()[i] + eff)
                        .saturating_sub(x.shape()[2 + i])
                        .saturating_sub(pb[i])
                }
            })
            .collect();
        let mut out_shape = x.shape()[..2].to_vec();
        out_shape.extend_from_slice(&out_sp);
        let total = checked_numel(node, &out_shape)?;
        let (i3, o3) = (to3(&x.shape()[2..], 1), to3(&out_sp, 1));
        let (k3, s3, d3) = (
            to3(w.kernel(), 1),
            to3(w.strides(), 1),
            to3(w.dilations(), 1),
        );
        let (pb3, pe3) = (to3(&pb, 0), to3(&pe, 0));
        let in_len: usize = i3.iter().product();
        let out_len: usize = o3.iter().product();
        let xs = contiguous(x);
        // Every path below writes every output when the input planes are not empty.
        let mut out = if in_len > 0 {
            crate::buffers::take_f32_overwritten(total)
        } else {
            crate::buffers::take_f32(total)
        };
        let want_idx = self.kind == Kind::Max && node.outputs.get(1).is_some_and(|o| !o.is_empty());
        let mut idx = vec![0i64; if want_idx { total } else { 0 }];
        if total > 0 && in_len > 0 {
            let kind = self.kind;
            let col_major = self.col_major;
            // Per axis and output index: valid kernel taps [lo, hi) and taps inside the
            // padded extent, so the inner loops need no bounds checks.
            let ranges: Vec<Vec<(usize, usize, usize)>> = (0..3)
                .map(|a| {
                    (0..o3[a])
                        .map(|o| {
                            let start = (o * s3[a]) as isize - pb3[a] as isize;
                            let d = d3[a] as isize;
                            let lo = if start >= 0 {
                                0
                            } else {
                                ((-start) + d - 1) / d
                            };
                            let hi = (i3[a] as isize - start + d - 1).div_euclid(d).max(0);
                            let padded = ((i3[a] + pe3[a]) as isize - start + d - 1)
                                .div_euclid(d)
                                .max(0);
                            let k = k3[a] as isize;
                            (
                                lo.min(k) as usize,
                                hi.min(k).max(lo.min(k)) as usize,
                                padded.min(k) as usize,
                            )
                        })
                        .collect()
                })
                .collect();
            // The tap-by-tap plane (with indices); false when the run must stop. A
            // window can be as large as the padded input, so a plane can be long: the
            // meter counts every output row.
            let work = |p: usize, o: &mut [f32], ix: &mut [i64], meter: &mut Meter<'_>| {
                let xp = &xs[p * in_len..][..in_len];
                let mut pos = 0;
                for (od, &(dlo, dhi, dpad)) in ranges[0].iter().enumerate() {
                    let sd = (od * s3[0]) as isize - pb3[0] as isize;
                    for (oh, &(hlo, hhi, hpad)) in ranges[1].iter().enumerate() {
                        let sh = (oh * s3[1]) as isize - pb3[1] as isize;
                        let taps = (dhi - dlo) * (hhi - hlo) * k3[2];
                        if meter.tick((o3[2] * taps.max(1)) as u64) {
                            return false;
                        }
                        for (ow, &(wlo, whi, wpad)) in ranges[2].iter().enumerate() {
                            let sw = (ow * s3[2]) as isize - pb3[2] as isize;
                            let mut best = f32::MIN;
                            let mut best_at = 0usize;
                            let mut sum = 0.0f32;
                            for kd in dlo..dhi {
                                let id = (sd + (kd * d3[0]) as isize) as usize;
                                for kh in hlo..hhi {
                                    let ih = (sh + (kh * d3[1]) as isize) as usize;
                                    let base = (id * i3[1] + ih) * i3[2];
                                    for kw in wlo..whi {
                                        let at = base + (sw + (kw * d3[2]) as isize) as usize;
                                        let v = xp[at];
                                        sum += v;
                                        if v > best {
                                            best = v;
                                            best_at = at;
                                        }
                                    }
                                }
                            }
                            o[pos] = match kind {
                                Kind::Max => best,
                                Kind::Average { count_include_pad } => {
                                    let div = if count_include_pad {
                                        dpad * hpad * wpad
                                    } else {
                                        (dhi - dlo) * (hhi - hlo) * (whi - wlo)
                                    };
                                    if div == 0 { 0.0 } else { sum / div as f32 }
                                }
                            };
                            if !ix.is_empty() {
                                let (d, h, w) = (
                                    best_at / (i3[1] * i3[2]),
                                    (best_at / i3[2]) % i3[1],
                                    best_at % i3[2],
                                );
                                let local = if col_major {
                                    (w * i3[1] + h) * i3[0] + d
                                } else {
                                    best_at
                                };
                                ix[pos] = (p * in_len + local) as i64;
                            }
                            pos += 1;
                        }
                    }
                }
                true
            };
            let whole_plane = out_len == 1
                && (0..sp).all(|i| {
                    w.kernel()[i] == x.shape()[2 + i]
                        && pb[i] == 0
                        && pe[i] == 0
                        && (w.kernel()[i] == 1 || w.dilations()[i] == 1)
                });
            // The run's cancellation and deadline, taken on this thread (planes run on
            // pool workers) and polled per block of output rows. The global pool and
            // the fused 3-wide stride-2 path do work linear in the input (bounded by
            // the tensor limits) and are not polled.
            let stop = Stop::current();
            let stopped = AtomicBool::new(false);
            let init = || Meter::new(&stop);
            if whole_plane && !want_idx {
                // One window covering each plane exactly: a global pool.
                global_pool(&xs, in_len, kind == Kind::Max, &mut out);
            } else if want_idx {
                let par_min = crate::kernels::min_len_for(out.len());
                out.par_chunks_mut(out_len)
                    .zip(idx.par_chunks_mut(out_len))
                    .enumerate()
                    .with_min_len(par_min)
                    .for_each_init(init, |meter, (p, (o, ix))| {
                        if stopped.load(Ordering::Relaxed) || !work(p, o, ix, meter) {
                            stopped.store(true, Ordering::Relaxed);
                        }
                    });
            } else {
                let rows = RowPool::new(kind, [i3, o3, k3, s3, d3, pb3], &ranges);
                let par_min = crate::kernels::min_len_for(out.len());
                if !rows.fused_planes(&xs, in_len, &mut out, out_len) {
                    out.par_chunks_mut(out_len)
                        .enumerate()
                        .with_min_len(par_min)
                        .for_each_init(
                            || (rows.scratch(), init()),
                            |(sc, meter), (p, o)| {
                                if stopped.load(Ordering::Relaxed)
                                    || !rows.plane(&xs[p * in_len..][..in_len], o, sc, meter)
                                {
                                    stopped.store(true, Ordering::Relaxed);
                                }
                            },
                        );
                }
            }
            if stopped.into_inner() {
                return Err(stop.error(&|| {
                    format!(
                        "a {}-D pooling window of {:?} over {} planes",
                        sp,
                        w.kernel(),
                        out.len() / out_len.max(1)
                    )
                }));
            }
        }
        let mut res = vec![tensor(node, &out_shape, out)?];
        if want_idx {
            let arr = ArrayD::from_shape_vec(IxDyn(&out_shape), idx)
                .map_err(|e| shape_mismatch(node, e))?;
            res.push(Tensor::I64(arr));
        }
        Ok(res)
    }
}

/// The fast path (no indices): whole output rows at a time. Per output row, the
/// kernel's input rows are combined element-wise into one row
/// ([`crate::kernels::pool_rows`]), then each output combines its `kw` taps of that row
/// ([`crate::kernels::pool_taps`] for unit dilation and stride ≤ 2, else a phase split).
struct RowPool<'a> {
    kind: Kind,
    i3: [usize; 3],
    o3: [usize; 3],
    k3: [usize; 3],
    s3: [usize; 3],
    d3: [usize; 3],
    pb3: [usize; 3],
    ranges: &'a [Vec<(usize, usize, usize)>],
    /// Outputs along W whose taps are all inside the row: a contiguous run `[f0, f1)`.
    full: (usize, usize),
    isa: crate::kernels::Isa,
    /// Per output row, for 2-D windows 3 wide at stride 2 (unit dilation along W): the
    /// input rows and divisor for [`crate::kernels::pool_planes_k3s2`].
    fused: Option<Vec<crate::kernels::RowSpec>>,
}

/// Per-task scratch memory of [`RowPool::plane`] (allocated once per task, not per plane).
struct Scratch<'x> {
    acc: Vec<f32>,
    rows: Vec<&'x [f32]>,
    phases: Vec<Vec<f32>>,
}

impl<'a> RowPool<'a> {
    /// `geo` is `[input, output, kernel, strides, dilations, begin pads]` (3-D each).
    fn new(kind: Kind, geo: [[usize; 3]; 6], ranges: &'a [Vec<(usize, usize, usize)>]) -> Self {
        let [i3, o3, k3, s3, d3, pb3] = geo;
        let ok = |r: &(usize, usize, usize)| r.0 == 0 && r.1 == k3[2];
        let f0 = ranges[2].iter().position(ok).unwrap_or(0);
        let f1 = f0 + ranges[2][f0..].iter().take_while(|r| ok(r)).count();
        let flat = i3[0] == 1 && o3[0] == 1 && k3[0] == 1;
        let fused = (flat && k3[2] == 3 && s3[2] == 2 && d3[2] == 1 && f1 > f0).then(|| {
            ranges[1]
                .iter()
                .enumerate()
                .map(|(oh, &(hlo, hhi, hpad))| {
                    let n = hhi.saturating_sub(hlo);
                    let first = if n == 0 {
                        0
                    } else {
                        ((oh * s3[1] + hlo * d3[1]) - pb3[1]) * i3[2]
                    };
                    let div = match kind {
                        Kind::Average {
                            count_include_pad: true,
                        } => hpad * 3,
                        _ => n * 3,
                    };
                    crate::kernels::RowSpec {
                        first,
                        n,
                        div: div.max(1) as f32,
                    }
                })
                .collect()
        });
        Self {
            kind,
            i3,
            o3,
            k3,
            s3,
            d3,
            pb3,
            ranges,
            full: (f0, f1),
            isa: crate::kernels::best_isa(),
            fused,
        }
    }

    /// The fused path ([`crate::kernels::pool_planes_k3s2`]) over all planes, split
    /// across the pool's threads; `false` when it does not apply (nothing usable written).
    fn fused_planes(&self, xs: &[f32], in_len: usize, out: &mut [f32], out_len: usize) -> bool {
        let Some(specs) = &self.fused else {
            return false;
        };
        let max = self.kind == Kind::Max;
        let (full, o3, i3) = (self.full, self.o3, self.i3);
        let start = full.0 * 2 - self.pb3[2];
        let geo = (o3[2], full.0, full.1 - full.0);
        let w = (i3[2], i3[2] * self.d3[1]);
        let planes = out.len() / out_len;
        let per = if crate::kernels::in_parallel_pool() && out.len() >= 1 << 14 {
            planes.div_ceil(rayon::current_num_threads() * 2)
        } else {
            planes
        };
        let per = per.max(1);
        out.par_chunks_mut(per * out_len)
            .enumerate()
            .with_min_len(1)
            .map(|(t, o)| {
                let xc = &xs[t * per * in_len..];
                let done = crate::kernels::pool_planes_k3s2(
                    self.isa,
                    max,
                    (xc, in_len),
                    w,
                    specs,
                    start,
                    (o, out_len),
                    geo,
                );
                if done && (full.0 > 0 || full.1 < o3[2]) {
                    for (p, op) in o.chunks_exact_mut(out_len).enumerate() {
                        let xp = &xc[p * in_len..][..in_len];
                        for oh in 0..o3[1] {
                            for ow in (0..full.0).chain(full.1..o3[2]) {
                                op[oh * o3[2] + ow] = self.direct(xp, oh, ow);
                            }
                        }
                    }
                }
                done
            })
            .reduce(|| true, |a, b| a && b)
    }

    /// Output `(oh, ow)` of a 2-D plane computed tap by tap, in the row-pass order
    /// (each column's rows first, then the columns).
    fn direct(&self, xp: &[f32], oh: usize, ow: usize) -> f32 {
        let max = self.kind == Kind::Max;
        let init = if max { f32::MIN } else { 0.0 };
        let (hlo, hhi, hpad) = self.ranges[1][oh];
        let (wlo, whi, wpad) = self.ranges[2][ow];
        let mut o = init;
        for kw in wlo..whi {
            let c = ow * self.s3[2] + kw * self.d3[2] - self.pb3[2];
            let mut v = init;
            for kh in hlo..hhi {
                let r = oh * self.s3[1] + kh * self.d3[1] - self.pb3[1];
                let x = xp[r * self.i3[2] + c];
                v = if max {
                    if x > v { x } else { v }
                } else {
                    v + x
                };
            }
            o = if max {
                if v > o { v } else { o }
            } else {
                o + v
            };
        }
        match self.kind {
            Kind::Max => o,
            Kind::Average { count_include_pad } => {
                let div = if count_include_pad {
                    hpad * wpad
                } else {
                    (hhi - hlo) * (whi - wlo)
                };
                if div == 0 { 0.0 } else { o / div as f32 }
            }
        }
    }

    fn scratch<'x>(&self) -> Scratch<'x> {
        Scratch {
            acc: vec![0.0; self.i3[2]],
            rows: Vec::with_capacity(self.k3[0] * self.k3[1]),
            phases: vec![Vec::new(); self.s3[2]],
        }
    }

    /// Outputs `o` (starting at output index `first`) whose `kw` taps all lie inside
    /// the combined row `acc`: the row is split into `stride` phases
    /// (`phase[p][j] = acc[stride·j + p]`), so every tap is a contiguous slice of one
    /// phase and the loop over outputs vectorises. Taps are combined in `kw` order, as
    /// in the scalar path (same results).
    fn full_taps(&self, acc: &[f32], phases: &mut [Vec<f32>], o: &mut [f32], first: usize) {
        let (s, d, p) = (self.s3[2], self.d3[2], self.pb3[2] as isize);
        let max = self.kind == Kind::Max;
        if s == 2 {
            // Deinterleave in one pass over pairs (vectorises, unlike `step_by`).
            let (even, odd) = phases.split_at_mut(1);
            let (even, odd) = (&mut even[0], &mut odd[0]);
            let pairs = acc.len() / 2;
            even.resize(acc.len().div_ceil(2), 0.0);
            odd.resize(pairs, 0.0);
            for ((e, o), c) in even.iter_mut().zip(odd.iter_mut()).zip(acc.chunks_exact(2)) {
                *e = c[0];
                *o = c[1];
            }
            if acc.len() % 2 == 1 {
                even[pairs] = acc[acc.len() - 1];
            }
        } else if s > 1 {
            for (ph, v) in phases.iter_mut().enumerate() {
                v.clear();
                v.extend(acc.iter().skip(ph).step_by(s));
            }
        }
        o.fill(if max { f32::MIN } else { 0.0 });
        for kw in 0..self.k3[2] {
            let base = (kw * d) as isize - p;
            let (ph, shift) = (base.rem_euclid(s as isize), base.div_euclid(s as isize));
            let src = if s > 1 { &phases[ph as usize][..] } else { acc };
            let start = (first as isize + shift) as usize;
            let src = &src[start..start + o.len()];
            if max {
                o.iter_mut()
                    .zip(src)
                    .for_each(|(a, &v)| *a = if v > *a { v } else { *a });
            } else {
                o.iter_mut().zip(src).for_each(|(a, &v)| *a += v);
            }
        }
    }

    /// One `[D, H, W]` plane. Max ignores NaN taps (as the tap-by-tap loop does: the
    /// result is the largest non-NaN tap, `f32::MIN` if none). False (the plane left
    /// unfinished) when `meter` says the run must stop; it counts each output row.
    fn plane<'x>(
        &self,
        xp: &'x [f32],
        o: &mut [f32],
        sc: &mut Scratch<'x>,
        meter: &mut Meter<'_>,
    ) -> bool {
        let (i3, o3, s3, d3, pb3) = (self.i3, self.o3, self.s3, self.d3, self.pb3);
        let max = self.kind == Kind::Max;
        let init = if max { f32::MIN } else { 0.0 };
        let kw_len = self.k3[2];
        let full = self.full;
        // Unit dilation and stride ≤ 2: the SIMD tap kernel reads the row directly.
        let direct = d3[2] == 1 && s3[2] <= 2;
        for (od, &(dlo, dhi, dpad)) in self.ranges[0].iter().enumerate() {
            let sd = (od * s3[0]) as isize - pb3[0] as isize;
            for (oh, &(hlo, hhi, hpad)) in self.ranges[1].iter().enumerate() {
                let sh = (oh * s3[1]) as isize - pb3[1] as isize;
                let orow = &mut o[(od * o3[1] + oh) * o3[2]..][..o3[2]];
                let rows = (dhi - dlo) * (hhi - hlo);
                if meter.tick((rows * i3[2] + o3[2] * kw_len) as u64) {
                    return false;
                }
                sc.rows.clear();
                for kd in dlo..dhi {
                    let id = (sd + (kd * d3[0]) as isize) as usize;
                    for kh in hlo..hhi {
                        let ih = (sh + (kh * d3[1]) as isize) as usize;
                        sc.rows.push(&xp[(id * i3[1] + ih) * i3[2]..][..i3[2]]);
                    }
                }
                crate::kernels::pool_rows(self.isa, max, &sc.rows, &mut sc.acc);
                let acc = &sc.acc;
                if full.1 > full.0 {
                    let div = match self.kind {
                        Kind::Max => 1,
                        Kind::Average {
                            count_include_pad: true,
                        } => dpad * hpad * kw_len,
                        Kind::Average { .. } => (dhi - dlo) * (hhi - hlo) * kw_len,
                    };
                    // Division (not a multiply by 1/div) keeps the scalar path's
                    // rounding; div > 0 since every tap is inside.
                    let div = div.max(1) as f32;
                    let run = &mut orow[full.0..full.1];
                    if direct {
                        let taps = crate::kernels::Taps {
                            start: full.0 * s3[2] - pb3[2],
                            k: kw_len,
                            s: s3[2],
                        };
                        crate::kernels::pool_taps(self.isa, max, acc, taps, div, run);
                    } else {
                        self.full_taps(acc, &mut sc.phases, run, full.0);
                        if !max {
                            run.iter_mut().for_each(|a| *a /= div);
                        }
                    }
                }
                let (sw, dw, pw) = (s3[2], d3[2], pb3[2]);
                // Only the outputs outside the full run are left (borders, padding).
                let (f0, f1) = if full.1 > full.0 { full } else { (0, 0) };
                for ow in (0..f0).chain(f1..o3[2]) {
                    let a = &mut orow[ow];
                    let (wlo, whi, wpad) = self.ranges[2][ow];
                    let n = whi.saturating_sub(wlo);
                    // With n > 0 the first tap lies inside the row (so no underflow).
                    let row = if n == 0 {
                        &[][..]
                    } else {
                        &acc[ow * sw + wlo * dw - pw..]
                    };
                    if max {
                        *a = if dw == 1 {
                            row[..n]
                                .iter()
                                .fold(init, |m, &v| if v > m { v } else { m })
                        } else {
                            row.iter()
                                .step_by(dw)
                                .take(n)
                                .fold(init, |m, &v| if v > m { v } else { m })
                        };
                    } else {
                        let sum: f32 = row.iter().step_by(dw).take(n).sum();
                        let Kind::Average { count_include_pad } = self.kind else {
                            continue;
                        };
                        let div = if count_include_pad {
                            dpad * hpad * wpad
                        } else {
                            (dhi - dlo) * (hhi - hlo) * (whi - wlo)
                        };
                        *a = if div == 0 { 0.0 } else { sum / div as f32 };
                    }
                }
            }
        }
        true
    }
}
