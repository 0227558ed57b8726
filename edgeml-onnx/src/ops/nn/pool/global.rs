//! GlobalAveragePool and GlobalMaxPool (and pooling windows that cover whole planes).

use super::super::{contiguous, input_f32, tensor};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::shape_mismatch;
use crate::{Node, Result, Tensor};
use rayon::prelude::*;

#[derive(Debug)]
struct GlobalPool {
    node: Node,
    max: bool,
}

pub(in crate::ops::nn) fn build_global_average_pool(
    ctx: &BuildContext<'_>,
) -> Result<Box<dyn Operator>> {
    Ok(Box::new(GlobalPool {
        node: ctx.node.clone(),
        max: false,
    }))
}

pub(in crate::ops::nn) fn build_global_max_pool(
    ctx: &BuildContext<'_>,
) -> Result<Box<dyn Operator>> {
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
            return Err(shape_mismatch(
                node,
                format!("input {:?} must have rank >= 2", x.shape()),
            ));
        }
        let planes = x.shape()[0] * x.shape()[1];
        let inner: usize = x.shape()[2..].iter().product();
        let xs = contiguous(x);
        let mut out = vec![0.0f32; planes];
        if inner > 0 {
            global_pool(&xs, inner, self.max, &mut out);
        }
        let mut shape = x.shape()[..2].to_vec();
        shape.resize(x.ndim(), 1);
        Ok(vec![tensor(node, &shape, out)?])
    }
}

/// The sum of `x` in `f64`, over 8 interleaved partial sums (so it vectorises; the
/// result can differ from a left-to-right sum only in the last bits of the `f64`).
fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    acc.iter().sum::<f64>() + tail
}

/// `out[p]` = the largest non-NaN value of plane `p` of `xs` (`f32::MIN` if none), or
/// its mean (summed in `f64`). Planes are `inner > 0` elements long.
pub(super) fn global_pool(xs: &[f32], inner: usize, max: bool, out: &mut [f32]) {
    let par_min = crate::kernels::min_len_for(out.len() * inner);
    out.par_iter_mut()
        .zip(xs.par_chunks(inner))
        .with_min_len(par_min)
        .for_each(|(o, xi)| {
            *o = if max {
                xi.iter()
                    .copied()
                    .fold(f32::MIN, |m, v| if v > m { v } else { m })
            } else {
                (sum_f64(xi) / inner as f64) as f32
            };
        });
}
