//! ConvTranspose (1-D to 3-D; groups, dilations, strides, pads, output_padding,
//! output_shape, auto_pad) as GEMM (`Wᵀ·X`) followed by col2im.

use super::{AutoPad, ConvAttrs, checked_numel, contiguous, conv_operands, tensor, to3};
use crate::kernels::{self, Isa, Lhs, MatRef, PackedA, Rhs};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::{Attrs, invalid, shape_mismatch};
use crate::plan::budget::Stop;
use crate::{Node, Result, Tensor};
use rayon::prelude::*;

#[derive(Debug)]
struct ConvTranspose {
    node: Node,
    /// `group` and `kernel_shape`.
    attrs: ConvAttrs,
    isa: Isa,
    packed: Option<Vec<PackedA>>,
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let attrs = ConvAttrs::from_node(node)?;
    let group = attrs.group();
    let isa = kernels::best_isa();
    let mut packed = None;
    if let Some(Some(Tensor::F32(w))) = ctx.constant_inputs.get(1) {
        let c = w.shape().first().copied().unwrap_or(0);
        if w.ndim() < 3 || c % group != 0 {
            return Err(shape_mismatch(
                node,
                format!("weight shape {:?} does not fit group {group}", w.shape()),
            ));
        }
        let c_g = c / group;
        let cols = w.len() / c.max(1);
        let data = contiguous(w);
        let mut v = Vec::with_capacity(group);
        for g in 0..group {
            let wg = MatRef::row_major(&data[g * c_g * cols..(g + 1) * c_g * cols], c_g, cols)?;
            v.push(PackedA::pack(isa, wg.t()));
        }
        packed = Some(v);
    }
    Ok(Box::new(ConvTranspose {
        node: node.clone(),
        attrs,
        isa,
        packed,
    }))
}

impl Operator for ConvTranspose {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let (x, w, b) = conv_operands(node, inputs)?;
        let rank = x.ndim();
        let sp = rank - 2;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let group = self.attrs.group();
        if w.shape()[0] != c || c % group != 0 {
            return Err(shape_mismatch(
                node,
                format!(
                    "input {:?}, weight {:?} and group {group} disagree",
                    x.shape(),
                    w.shape()
                ),
            ));
        }
        let (c_g, m_g) = (c / group, w.shape()[1]);
        let m = m_g * group;
        let kernel = w.shape()[2..].to_vec();
        self.attrs.check_kernel(node, &kernel)?;
        if let Some(b) = b
            && b.shape() != [m]
        {
            return Err(shape_mismatch(
                node,
                format!("bias shape {:?}, expected [{m}]", b.shape()),
            ));
        }
        let a = Attrs::new(node);
        let strides = a.usizes("strides", sp, 1)?;
        let dil = a.usizes("dilations", sp, 1)?;
        let out_pad = a.usizes("output_padding", sp, 0)?;
        let pads = a.usizes("pads", 2 * sp, 0)?;
        if strides.contains(&0) || dil.contains(&0) {
            return Err(invalid(node, "strides and dilations must be positive"));
        }
        let ap = AutoPad::from_node(node)?;
        let out_shape_attr = a.usizes_opt("output_shape")?;
        let inp = &x.shape()[2..];
        let mut out_sp = Vec::with_capacity(sp);
        let mut pad_begin = Vec::with_capacity(sp);
        for i in 0..sp {
            let full =
                strides[i] * (inp[i].max(1) - 1) + out_pad[i] + (kernel[i].max(1) - 1) * dil[i] + 1;
            let target = match (&out_shape_attr, ap) {
                (Some(os), _) => Some(
                    *os.get(os.len().wrapping_sub(sp) + i)
                        .ok_or_else(|| invalid(node, "output_shape is too short"))?,
                ),
                (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(inp[i] * strides[i]),
                _ => None,
            };
            match target {
                Some(o) => {
                    let total = full as isize - o as isize;
                    let pb = if ap == AutoPad::SameUpper {
                        total / 2
                    } else {
                        total - total / 2
                    };
                    out_sp.push(o);
                    pad_begin.push(pb);
                }
                None => {
                    let (pb, pe) = if ap == AutoPad::Valid {
                        (0, 0)
                    } else {
                        (pads[i], pads[sp + i])
                    };
                    let o = full
                        .checked_sub(pb + pe)
                        .ok_or_else(|| shape_mismatch(node, "pads exceed the output extent"))?;
                    out_sp.push(o);
                    pad_begin.push(pb as isize);
                }
            }
        }
        let mut out_shape = vec![n, m];
        out_shape.extend_from_slice(&out_sp);
        let total = checked_numel(node, &out_shape)?;
        let mut out = vec![0.0f32; total];
        if total == 0 || x.is_empty() {
            return Ok(vec![tensor(node, &out_shape, out)?]);
        }
        let (i3, o3, k3, s3, d3) = (
            to3(inp, 1),
            to3(&out_sp, 1),
            to3(&kernel, 1),
            to3(&strides, 1),
            to3(&dil, 1),
        );
        let mut p3 = [0isize; 3];
        p3[3 - sp..].copy_from_slice(&pad_begin);
        let in_len: usize = i3.iter().product();
        let out_len: usize = o3.iter().product();
        let k_len: usize = k3.iter().product();
        let rows = m_g * k_len;
        let xs = contiguous(x);
        let ws = contiguous(w);
        let mut col = vec![0.0f32; checked_numel(node, &[rows, in_len])?];
        // The run's deadline and cancellation: polled inside each product and before
        // each image and group's scatter.
        let stop = Stop::current();
        for img in 0..n {
            for g in 0..group {
                if stop.requested() {
                    return Err(stop.error(&|| format!("image {img}, group {g}")));
                }
                let xg = MatRef::row_major(
                    &xs[(img * c + g * c_g) * in_len..][..c_g * in_len],
                    c_g,
                    in_len,
                )?;
                let lhs = match &self.packed {
                    Some(p) => Lhs::Packed(&p[g]),
                    None => Lhs::View(
                        MatRef::row_major(&ws[g * c_g * rows..][..c_g * rows], c_g, rows)?.t(),
                    ),
                };
                kernels::sgemm_until(
                    self.isa,
                    1.0,
                    lhs,
                    Rhs::View(xg),
                    0.0,
                    &mut col,
                    in_len,
                    &stop,
                )?;
                let og = &mut out[(img * m + g * m_g) * out_len..][..m_g * out_len];
                let par_min = crate::kernels::min_len_for(og.len());
                og.par_chunks_mut(out_len)
                    .enumerate()
                    .with_min_len(par_min)
                    .for_each(|(mo, plane)| {
                        let bias = b.map_or(0.0, |b| b[[g * m_g + mo]]);
                        plane.fill(bias);
                        for kr in 0..k_len {
                            let (kw, kh, kd) =
                                (kr % k3[2], (kr / k3[2]) % k3[1], kr / (k3[2] * k3[1]));
                            let src = &col[(mo * k_len + kr) * in_len..][..in_len];
                            for id in 0..i3[0] {
                                let od = (id * s3[0]) as isize - p3[0] + (kd * d3[0]) as isize;
                                if od < 0 || od >= o3[0] as isize {
                                    continue;
                                }
                                for ih in 0..i3[1] {
                                    let oh = (ih * s3[1]) as isize - p3[1] + (kh * d3[1]) as isize;
                                    if oh < 0 || oh >= o3[1] as isize {
                                        continue;
                                    }
                                    let srow = &src[(id * i3[1] + ih) * i3[2]..][..i3[2]];
                                    let drow = &mut plane
                                        [(od as usize * o3[1] + oh as usize) * o3[2]..][..o3[2]];
                                    for (iw, &v) in srow.iter().enumerate() {
                                        let ow =
                                            (iw * s3[2]) as isize - p3[2] + (kw * d3[2]) as isize;
                                        if ow >= 0 && (ow as usize) < o3[2] {
                                            drow[ow as usize] += v;
                                        }
                                    }
                                }
                            }
                        }
                    });
            }
        }
        Ok(vec![tensor(node, &out_shape, out)?])
    }
}
