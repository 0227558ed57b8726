//! Reductions (`Reduce{Mean,Sum,Max,Min,Prod,L1,L2,SumSquare,LogSumExp}`),
//! `ArgMax`/`ArgMin`, and `LRN`.
//!
//! Reductions accumulate in `f64` and cast back to the input type. Reducing an empty
//! set gives the identity of the reduction (0, 1, −∞ for Max, +∞ for Min).
//!
//! A contiguous `f32` input whose reduced axes are adjacent (the squeeze-excitation
//! `ReduceMean` over `[2, 3]`, a last-axis mean or sum, …) takes `reduce_runs_f32`: one
//! pass over the slice, eight `f64` partial sums per output (Max and Min compare in
//! `f32`, exactly), with no `f64` copy of the input.

use super::util::{Elem, input, slim, sum_f64, to_f32_vec, to_i64_vec};
use crate::ops::attr::{Attrs, describe, invalid, norm_axis};
use crate::{BuildContext, Error, Node, Operator, Registry, Result, Tensor, with_num};
use ndarray::{ArrayD, Axis, IxDyn};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Red {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSumExp,
}

#[derive(Debug)]
struct Reduce {
    node: Node,
    k: Red,
    keepdims: bool,
    noop_empty: bool,
    /// Axes from the attribute (older opsets); else from input 1.
    axes_attr: Option<Vec<i64>>,
    axes_from_input: bool,
}

fn reduce_f64(a: ArrayD<f64>, axes: &[usize], k: Red) -> ArrayD<f64> {
    let count: usize = axes.iter().map(|&ax| a.shape()[ax]).product();
    let (init, f): (f64, fn(f64, f64) -> f64) = match k {
        Red::Sum | Red::Mean | Red::LogSumExp => (0.0, |acc, x| acc + x),
        Red::L1 => (0.0, |acc, x| acc + x.abs()),
        Red::L2 | Red::SumSquare => (0.0, |acc, x| acc + x * x),
        Red::Prod => (1.0, |acc, x| acc * x),
        Red::Max => (f64::NEG_INFINITY, |acc, x| {
            if x.is_nan() || x > acc { x } else { acc }
        }),
        Red::Min => (
            f64::INFINITY,
            |acc, x| if x.is_nan() || x < acc { x } else { acc },
        ),
    };
    let mut a = a;
    let mut shift = None;
    if k == Red::LogSumExp {
        // Subtract the maximum for stability.
        let m = reduce_f64(a.clone(), axes, Red::Max);
        let mut mk = m.clone();
        for &ax in axes {
            mk = mk.insert_axis(Axis(ax));
        }
        let mk = mk.mapv(|v| if v.is_finite() { v } else { 0.0 });
        a = (&a - &mk).mapv(f64::exp);
        shift = Some(m.mapv(|v| if v.is_finite() { v } else { 0.0 }));
    }
    let mut sorted = axes.to_vec();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    for ax in sorted {
        a = a.fold_axis(Axis(ax), init, |&acc, &x| f(acc, x));
    }
    match k {
        Red::Mean => a.mapv(|v| v / count as f64),
        Red::L2 => a.mapv(f64::sqrt),
        Red::LogSumExp => {
            let s = shift.unwrap_or_else(|| ArrayD::zeros(a.raw_dim()));
            a.mapv(f64::ln) + s
        }
        _ => a,
    }
}

/// `[outer, red, inner]`: the input's shape merged around the reduced axes, when those
/// axes are adjacent (`axes` sorted, deduplicated, non-empty).
fn runs_of(shape: &[usize], axes: &[usize]) -> Option<[usize; 3]> {
    let (first, last) = (*axes.first()?, *axes.last()?);
    (last - first + 1 == axes.len()).then(|| {
        [
            shape[..first].iter().product(),
            shape[first..=last].iter().product(),
            shape[last + 1..].iter().product(),
        ]
    })
}

/// Reduces `x`, laid out `[outer, red, inner]`, over its middle axis into `outer · inner`
/// values; `None` for the reductions left to [`reduce_f64`] (Prod, LogSumExp) and for an
/// empty reduction.
fn reduce_runs_f32(x: &[f32], runs: [usize; 3], k: Red) -> Option<Vec<f32>> {
    let red = runs[1];
    if red == 0 {
        return None;
    }
    let max = |acc: f32, v: f32| if v.is_nan() || v > acc { v } else { acc };
    let min = |acc: f32, v: f32| if v.is_nan() || v < acc { v } else { acc };
    let mean = |s: f64| s / red as f64;
    let id = |s: f64| s;
    Some(match k {
        Red::Sum => sum_runs(x, runs, f64::from, id),
        Red::Mean => sum_runs(x, runs, f64::from, mean),
        Red::L1 => sum_runs(x, runs, |v| f64::from(v).abs(), id),
        Red::SumSquare => sum_runs(x, runs, |v| f64::from(v) * f64::from(v), id),
        Red::L2 => sum_runs(x, runs, |v| f64::from(v) * f64::from(v), f64::sqrt),
        Red::Max => fold_runs(x, runs, f32::NEG_INFINITY, max),
        Red::Min => fold_runs(x, runs, f32::INFINITY, min),
        Red::Prod | Red::LogSumExp => return None,
    })
}

/// `finish(Σ term(v))` over the middle axis, in `f64`: eight partial sums per output when
/// `inner == 1`, one per output column otherwise.
fn sum_runs(
    x: &[f32],
    [outer, red, inner]: [usize; 3],
    term: impl Fn(f32) -> f64 + Sync,
    finish: impl Fn(f64) -> f64 + Sync,
) -> Vec<f32> {
    if inner == 1 {
        // One output per run; large inputs are split over the plan's threads by whole
        // runs (each output's sum is the same either way).
        use rayon::prelude::*;
        let mut out = vec![0f32; outer];
        let per_task = match crate::kernels::min_len_for(x.len()) {
            usize::MAX => usize::MAX,
            _ => outer.div_ceil(2 * rayon::current_num_threads()),
        };
        out.par_iter_mut()
            .zip(x.par_chunks_exact(red))
            .with_min_len(per_task)
            .for_each(|(o, run)| *o = finish(sum_f64(run, &term)) as f32);
        return out;
    }
    let mut out = Vec::with_capacity(outer * inner);
    let mut acc = vec![0f64; inner];
    for block in x.chunks_exact(red * inner) {
        acc.fill(0.0);
        for row in block.chunks_exact(inner) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += term(v);
            }
        }
        out.extend(acc.iter().map(|&s| finish(s) as f32));
    }
    out
}

/// `f` folded over the middle axis from `init`, in `f32`.
fn fold_runs(
    x: &[f32],
    [outer, red, inner]: [usize; 3],
    init: f32,
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * inner);
    for block in x.chunks_exact(red * inner) {
        let start = out.len();
        out.resize(start + inner, init);
        for row in block.chunks_exact(inner) {
            for (e, &v) in out[start..].iter_mut().zip(row) {
                *e = f(*e, v);
            }
        }
    }
    out
}

impl Operator for Reduce {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let r = t.shape().len();
        let axes_raw = match (&self.axes_attr, self.axes_from_input) {
            (Some(a), _) => a.clone(),
            (None, true) => match inputs.get(1).copied().flatten() {
                Some(a) => to_i64_vec(node, a)?,
                None => vec![],
            },
            (None, false) => vec![],
        };
        if axes_raw.is_empty() && self.noop_empty {
            return Ok(vec![t.clone()]);
        }
        let mut axes: Vec<usize> = if axes_raw.is_empty() {
            (0..r).collect()
        } else {
            axes_raw
                .iter()
                .map(|&a| norm_axis(node, a, r))
                .collect::<Result<_>>()?
        };
        axes.sort_unstable();
        axes.dedup();
        let mut out_shape: Vec<usize> = t.shape().to_vec();
        for &ax in &axes {
            out_shape[ax] = 1;
        }
        if !self.keepdims {
            out_shape = t
                .shape()
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
        }
        if let Tensor::F32(a) = t
            && let Some(x) = a.as_slice()
            && let Some(runs) = runs_of(a.shape(), &axes)
            && let Some(v) = reduce_runs_f32(x, runs, self.k)
        {
            let out = ArrayD::from_shape_vec(IxDyn(&out_shape), v)
                .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))))?;
            return Ok(vec![Tensor::F32(out)]);
        }
        let out = with_num!(t.dtype(), T => {
            let a = T::get(t).ok_or_else(|| invalid(node, "dtype"))?;
            let red = reduce_f64(a.mapv(Elem::to_f64), &axes, self.k);
            let red = red
                .into_shape_with_order(IxDyn(&out_shape))
                .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))))?;
            Ok(T::wrap(red.mapv(T::from_f64)))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct ArgExt {
    node: Node,
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
}

impl Operator for ArgExt {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let axis = norm_axis(node, self.axis, t.shape().len())?;
        if t.shape()[axis] == 0 {
            return Err(Error::InvalidInput(format!(
                "{}: reducing an empty axis",
                describe(node)
            )));
        }
        let (max, last) = (self.max, self.last);
        let idx = with_num!(t.dtype(), T => {
            let a = T::get(t).ok_or_else(|| invalid(node, "dtype"))?;
            Ok(a.map_axis(Axis(axis), |lane| {
                let mut best = 0usize;
                let mut bv = lane[0];
                for (i, &v) in lane.iter().enumerate().skip(1) {
                    let better = if max { v > bv } else { v < bv };
                    let tie = v == bv && last;
                    if better || tie {
                        best = i;
                        bv = v;
                    }
                }
                best as i64
            }))
        })?;
        let idx = if self.keepdims {
            idx.insert_axis(Axis(axis))
        } else {
            idx
        };
        Ok(vec![Tensor::I64(idx)])
    }
}

#[derive(Debug)]
struct Lrn {
    node: Node,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
}

impl Operator for Lrn {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let s = t.shape().to_vec();
        if s.len() < 3 {
            return Err(Error::ShapeMismatch(format!(
                "{}: LRN needs rank >= 3, got {s:?}",
                describe(node)
            )));
        }
        let x = to_f32_vec(node, t)?;
        let (n, c) = (s[0], s[1]);
        let hw: usize = s[2..].iter().product();
        let lo = (self.size - 1) / 2;
        let hi = self.size - 1 - lo;
        let scale = self.alpha / self.size as f32;
        let mut y = vec![0f32; x.len()];
        // `size` may be as large as the channel count, so the work is up to
        // elements × channels: poll the run's deadline and cancellation per plane.
        let stop = crate::plan::budget::Stop::current();
        let mut meter = crate::plan::budget::Meter::new(&stop);
        for b in 0..n {
            for ch in 0..c {
                let c0 = ch.saturating_sub(lo);
                let c1 = (ch + hi).min(c - 1);
                if meter.tick((hw * (c1 + 1 - c0)) as u64) {
                    return Err(stop.error(&|| format!("LRN of size {}", self.size)));
                }
                for p in 0..hw {
                    let mut sq = 0f32;
                    for cc in c0..=c1 {
                        let v = x[(b * c + cc) * hw + p];
                        sq += v * v;
                    }
                    let i = (b * c + ch) * hw + p;
                    y[i] = x[i] / (self.bias + scale * sq).powf(self.beta);
                }
            }
        }
        Ok(vec![Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&s), y).map_err(|e| invalid(node, e))?,
        )])
    }
}

/// Registers the reductions, `ArgMax`/`ArgMin` and `LRN`.
pub fn register(r: &mut Registry) {
    for (name, k) in [
        ("ReduceSum", Red::Sum),
        ("ReduceMean", Red::Mean),
        ("ReduceMax", Red::Max),
        ("ReduceMin", Red::Min),
        ("ReduceProd", Red::Prod),
        ("ReduceL1", Red::L1),
        ("ReduceL2", Red::L2),
        ("ReduceSumSquare", Red::SumSquare),
        ("ReduceLogSumExp", Red::LogSumExp),
    ] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            let a = Attrs::new(c.node);
            // ReduceSum moved axes to an input at opset 13, the others at 18.
            let from_input = c.opset >= if k == Red::Sum { 13 } else { 18 };
            Ok(Box::new(Reduce {
                node: slim(c.node),
                k,
                keepdims: a.int("keepdims", 1)? != 0,
                noop_empty: a.int("noop_with_empty_axes", 0)? != 0,
                axes_attr: if from_input {
                    None
                } else {
                    a.ints_opt("axes")?
                },
                axes_from_input: from_input,
            }) as Box<dyn Operator>)
        });
    }
    for (name, max) in [("ArgMax", true), ("ArgMin", false)] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            let a = Attrs::new(c.node);
            Ok(Box::new(ArgExt {
                node: slim(c.node),
                max,
                axis: a.int("axis", 0)?,
                keepdims: a.int("keepdims", 1)? != 0,
                last: a.int("select_last_index", 0)? != 0,
            }) as Box<dyn Operator>)
        });
    }
    r.register("", "LRN", 1, i64::MAX, |c: &BuildContext<'_>| {
        let a = Attrs::new(c.node);
        let size = a.int_req("size")?;
        if size < 1 {
            return Err(invalid(c.node, format!("size {size} must be positive")));
        }
        Ok(Box::new(Lrn {
            node: slim(c.node),
            size: size as usize,
            alpha: a.float("alpha", 1e-4)?,
            beta: a.float("beta", 0.75)?,
            bias: a.float("bias", 1.0)?,
        }) as Box<dyn Operator>)
    });
}
