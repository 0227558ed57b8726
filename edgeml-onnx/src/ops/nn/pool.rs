//! MaxPool, AveragePool (1-D to 3-D) and the global pools.

use super::{
    AutoPad, Window, attr_int, attr_ints, checked_numel, contiguous, input_f32, invalid, shape_err,
    tensor, to_usizes, to3, unsupported,
};
use crate::op::{BuildContext, Operator};
use crate::{Node, Result, Tensor};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

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
    let kernel = attr_ints(node, "kernel_shape")?
        .ok_or_else(|| invalid(node, "kernel_shape is required"))?;
    let kernel = to_usizes(node, "kernel_shape", &kernel)?;
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
        col_major: attr_int(node, "storage_order", 0)? != 0,
    }))
}

pub(super) fn build_max_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    build_pool(ctx, Kind::Max)
}

pub(super) fn build_average_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let cip = attr_int(ctx.node, "count_include_pad", 0)? != 0;
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
        let sp = self.window.kernel.len();
        if x.ndim() != sp + 2 {
            return Err(shape_err(
                node,
                format!("input {:?} does not match a {sp}-D kernel", x.shape()),
            ));
        }
        let w = &self.window;
        let (out_sp, pb) = w.geometry(node, &x.shape()[2..])?;
        let pe: Vec<usize> = (0..sp)
            .map(|i| match w.auto_pad {
                AutoPad::NotSet => w.pads[sp + i],
                AutoPad::Valid => 0,
                _ => {
                    let eff = (w.kernel[i] - 1) * w.dilations[i] + 1;
                    ((out_sp[i].max(1) - 1) * w.strides[i] + eff)
                        .saturating_sub(x.shape()[2 + i])
                        .saturating_sub(pb[i])
                }
            })
            .collect();
        let mut out_shape = x.shape()[..2].to_vec();
        out_shape.extend_from_slice(&out_sp);
        let total = checked_numel(node, &out_shape)?;
        let (i3, o3) = (to3(&x.shape()[2..], 1), to3(&out_sp, 1));
        let (k3, s3, d3) = (to3(&w.kernel, 1), to3(&w.strides, 1), to3(&w.dilations, 1));
        let (pb3, pe3) = (to3(&pb, 0), to3(&pe, 0));
        let in_len: usize = i3.iter().product();
        let out_len: usize = o3.iter().product();
        let xs = contiguous(x);
        let mut out = vec![0.0f32; total];
        let want_idx = self.kind == Kind::Max && node.outputs.get(1).is_some_and(|o| !o.is_empty());
        let mut idx = vec![0i64; if want_idx { total } else { 0 }];
        if total > 0 && in_len > 0 {
            let kind = self.kind;
            let col_major = self.col_major;
            let work = |p: usize, o: &mut [f32], ix: &mut [i64]| {
                let xp = &xs[p * in_len..][..in_len];
                let mut pos = 0;
                for od in 0..o3[0] {
                    for oh in 0..o3[1] {
                        for ow in 0..o3[2] {
                            let start = [od, oh, ow].map(|v| v as isize);
                            let start =
                                [0, 1, 2].map(|a| start[a] * s3[a] as isize - pb3[a] as isize);
                            let mut best = f32::MIN;
                            let mut best_at = 0usize;
                            let mut sum = 0.0f32;
                            let (mut valid, mut padded) = (0usize, 0usize);
                            for kd in 0..k3[0] {
                                let id = start[0] + (kd * d3[0]) as isize;
                                for kh in 0..k3[1] {
                                    let ih = start[1] + (kh * d3[1]) as isize;
                                    for kw in 0..k3[2] {
                                        let iw = start[2] + (kw * d3[2]) as isize;
                                        let c = [id, ih, iw];
                                        let in_pad = (0..3).all(|a| {
                                            c[a] >= -(pb3[a] as isize)
                                                && c[a] < (i3[a] + pe3[a]) as isize
                                        });
                                        if in_pad {
                                            padded += 1;
                                        }
                                        if (0..3).all(|a| c[a] >= 0 && c[a] < i3[a] as isize) {
                                            let at = ((id as usize) * i3[1] + ih as usize) * i3[2]
                                                + iw as usize;
                                            let v = xp[at];
                                            valid += 1;
                                            sum += v;
                                            if v > best {
                                                best = v;
                                                best_at = at;
                                            }
                                        }
                                    }
                                }
                            }
                            o[pos] = match kind {
                                Kind::Max => best,
                                Kind::Average { count_include_pad } => {
                                    let div = if count_include_pad { padded } else { valid };
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
            };
            if want_idx {
                out.par_chunks_mut(out_len)
                    .zip(idx.par_chunks_mut(out_len))
                    .enumerate()
                    .for_each(|(p, (o, ix))| work(p, o, ix));
            } else {
                out.par_chunks_mut(out_len)
                    .enumerate()
                    .for_each(|(p, o)| work(p, o, &mut []));
            }
        }
        let mut res = vec![tensor(node, &out_shape, out)?];
        if want_idx {
            let arr =
                ArrayD::from_shape_vec(IxDyn(&out_shape), idx).map_err(|e| shape_err(node, e))?;
            res.push(Tensor::I64(arr));
        }
        Ok(res)
    }
}

#[derive(Debug)]
struct GlobalPool {
    node: Node,
    max: bool,
}

pub(super) fn build_global_average_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(GlobalPool {
        node: ctx.node.clone(),
        max: false,
    }))
}

pub(super) fn build_global_max_pool(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(GlobalPool {
        node: ctx.node.clone(),
        max: true,
    }))
}

impl Operator for GlobalPool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input_f32(node, inputs, 0)?;
        if x.ndim() < 2 {
            return Err(shape_err(
                node,
                format!("input {:?} must have rank >= 2", x.shape()),
            ));
        }
        let planes = x.shape()[0] * x.shape()[1];
        let inner: usize = x.shape()[2..].iter().product();
        let xs = contiguous(x);
        let mut out = vec![0.0f32; planes];
        if inner > 0 {
            out.par_iter_mut()
                .zip(xs.par_chunks(inner))
                .for_each(|(o, xi)| {
                    *o = if self.max {
                        xi.iter()
                            .copied()
                            .fold(f32::MIN, |m, v| if v > m { v } else { m })
                    } else {
                        (xi.iter().map(|&v| v as f64).sum::<f64>() / inner as f64) as f32
                    };
                });
        }
        let mut shape = x.shape()[..2].to_vec();
        shape.resize(x.ndim(), 1);
        Ok(vec![tensor(node, &shape, out)?])
    }
}
