//! Conv (1-D, 2-D, 3-D; groups, dilations, strides, pads, auto_pad).
//!
//! 1×1 stride-1 unpadded convolutions are a plain GEMM on the input; channels-of-one
//! groups (depthwise) use a direct kernel; everything else is im2col + GEMM with the
//! weights packed once at build time when they are constant.
//!
//! `FusedConv` (domain `com.microsoft`, as onnxruntime defines it and as its optimizer
//! writes it into saved models) is the same operator with an optional fourth input `Z`
//! added to the result and an activation applied last:
//! `Y = activation(Conv(X, W, B) + Z)`, `activation` one of `Relu`, `LeakyRelu`
//! (`activation_params = [alpha]`), `Clip` (`[min, max]`), `Sigmoid`, `Tanh`,
//! `HardSigmoid` (`[alpha, beta]`). edgeml's own plan-time fusion emits it too.

use super::{
    Window, attr_floats, attr_int, attr_ints, attr_string, checked_numel, contiguous,
    conv_operands, invalid, opt_input_f32, shape_err, tensor, to_usizes, to3,
};
use crate::kernels::{self, Isa, Lhs, MatRef, PackedA, Rhs};
use crate::op::{BuildContext, Operator};
use crate::{Node, Result, Tensor};
use rayon::prelude::*;

#[derive(Debug)]
struct Conv {
    node: Node,
    group: usize,
    kernel_attr: Option<Vec<usize>>,
    isa: Isa,
    /// Per-group packed weights, when the weights were constant at build time.
    packed: Option<Vec<PackedA>>,
    /// `FusedConv`: the activation applied last (`Activation::None` for plain Conv).
    act: Activation,
    /// `FusedConv`: whether input 3 (`Z`, added before the activation) is read.
    fused: bool,
}

/// The activation a `FusedConv` applies to its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x` if `x ≥ 0`, else `alpha·x`.
    LeakyRelu(f32),
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid(f32, f32),
}

impl Activation {
    /// Parses onnxruntime's `activation` / `activation_params` attributes.
    fn from_node(node: &crate::Node) -> Result<Self> {
        let name = attr_string(node, "activation", "")?;
        let p = attr_floats(node, "activation_params")?.unwrap_or_default();
        let param = |i: usize, default: f32| p.get(i).copied().unwrap_or(default);
        Ok(match name.as_str() {
            "" | "Identity" => Self::None,
            "Relu" => Self::Relu,
            "LeakyRelu" => Self::LeakyRelu(param(0, 0.01)),
            "Clip" => Self::Clip(param(0, f32::MIN), param(1, f32::MAX)),
            "Sigmoid" => Self::Sigmoid,
            "Tanh" => Self::Tanh,
            "HardSigmoid" => Self::HardSigmoid(param(0, 0.2), param(1, 0.5)),
            other => {
                return Err(super::unsupported(
                    node,
                    format!(
                        "activation {other:?} is not supported (Relu, LeakyRelu, Clip, \
                         Sigmoid, Tanh, HardSigmoid are)"
                    ),
                ));
            }
        })
    }

    /// Applies the activation in place.
    pub(crate) fn apply(self, v: &mut [f32]) {
        match self {
            Self::None => {}
            // NaN propagates, as in the standalone Relu/Clip operators, so fusing them
            // into a convolution never changes a result.
            Self::Relu => v.iter_mut().for_each(|x| {
                if *x < 0.0 {
                    *x = 0.0;
                }
            }),
            Self::LeakyRelu(a) => v
                .iter_mut()
                .for_each(|x| *x = if *x >= 0.0 { *x } else { a * *x }),
            Self::Clip(lo, hi) => v.iter_mut().for_each(|x| {
                if *x < lo {
                    *x = lo;
                } else if *x > hi {
                    *x = hi;
                }
            }),
            Self::Sigmoid => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            Self::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
            Self::HardSigmoid(a, b) => v.iter_mut().for_each(|x| *x = (a * *x + b).clamp(0.0, 1.0)),
        }
    }
}

/// `FusedConv` (domain `com.microsoft`): Conv, plus `Z`, then an activation.
pub(super) fn build_fused(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let act = Activation::from_node(ctx.node)?;
    let mut op = build_conv(ctx)?;
    op.act = act;
    op.fused = true;
    Ok(op)
}

pub(super) fn build(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(build_conv(ctx)?)
}

fn build_conv(ctx: &BuildContext<'_>) -> Result<Box<Conv>> {
    let node = ctx.node;
    let group = usize::try_from(attr_int(node, "group", 1)?)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| invalid(node, "group must be positive"))?;
    let kernel_attr = attr_ints(node, "kernel_shape")?
        .map(|v| to_usizes(node, "kernel_shape", &v))
        .transpose()?;
    let isa = kernels::best_isa();
    let mut packed = None;
    if let Some(Some(Tensor::F32(w))) = ctx.constant_inputs.get(1) {
        let m = w.shape().first().copied().unwrap_or(0);
        if w.ndim() < 3 || m % group != 0 {
            return Err(shape_err(
                node,
                format!("weight shape {:?} does not fit group {group}", w.shape()),
            ));
        }
        let c_g = w.shape()[1];
        if c_g != 1 {
            let k = w.len() / m.max(1);
            let m_g = m / group;
            let data = contiguous(w);
            let mut v = Vec::with_capacity(group);
            for g in 0..group {
                let a = MatRef::row_major(&data[g * m_g * k..(g + 1) * m_g * k], m_g, k)?;
                v.push(PackedA::pack(isa, a));
            }
            packed = Some(v);
        }
    }
    Ok(Box::new(Conv {
        node: node.clone(),
        group,
        kernel_attr,
        isa,
        packed,
        act: Activation::None,
        fused: false,
    }))
}

/// Geometry of one convolution, with spatial dims left-padded to 3.
#[derive(Debug, Clone, Copy)]
struct Geo {
    inp: [usize; 3],
    out: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    d: [usize; 3],
    p: [usize; 3],
}

impl Geo {
    fn in_len(&self) -> usize {
        self.inp.iter().product()
    }
    fn out_len(&self) -> usize {
        self.out.iter().product()
    }
    fn k_len(&self) -> usize {
        self.k.iter().product()
    }
}

/// Output positions `o` along one axis whose input `o·s + off` lies in `0..n`.
fn valid_range(off: isize, s: usize, n: usize, out: usize) -> (usize, usize) {
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

/// Writes the im2col matrix (`C·KD·KH·KW` rows × output positions) of one image group.
fn im2col(x: &[f32], g: &Geo, col: &mut [f32]) {
    let p = g.out_len();
    let [kd_n, kh_n, kw_n] = g.k;
    let [id_n, ih_n, iw_n] = g.inp;
    let [od_n, oh_n, ow_n] = g.out;
    let par_min = crate::kernels::min_len_for(col.len());
    col.par_chunks_mut(p)
        .enumerate()
        .with_min_len(par_min)
        .for_each(|(r, row)| {
            let kw = r % kw_n;
            let kh = (r / kw_n) % kh_n;
            let kd = (r / (kw_n * kh_n)) % kd_n;
            let c = r / (kw_n * kh_n * kd_n);
            let xc = &x[c * id_n * ih_n * iw_n..(c + 1) * id_n * ih_n * iw_n];
            let offs = [0, 1, 2].map(|a| ([kd, kh, kw][a] * g.d[a]) as isize - g.p[a] as isize);
            let (wlo, whi) = valid_range(offs[2], g.s[2], iw_n, ow_n);
            for od in 0..od_n {
                let id = (od * g.s[0]) as isize + offs[0];
                for oh in 0..oh_n {
                    let ih = (oh * g.s[1]) as isize + offs[1];
                    let dst = &mut row[(od * oh_n + oh) * ow_n..(od * oh_n + oh + 1) * ow_n];
                    if id < 0 || id >= id_n as isize || ih < 0 || ih >= ih_n as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &xc[(id as usize * ih_n + ih as usize) * iw_n..][..iw_n];
                    dst[..wlo].fill(0.0);
                    dst[whi..].fill(0.0);
                    if wlo == whi {
                        // Every tap of this row falls in the padding (e.g. a kernel wider
                        // than the padded input); `start` below could be negative.
                        continue;
                    }
                    let start = (wlo * g.s[2]) as isize + offs[2];
                    if g.s[2] == 1 {
                        let start = start as usize;
                        dst[wlo..whi].copy_from_slice(&src[start..start + whi - wlo]);
                    } else {
                        for (j, d) in dst[wlo..whi].iter_mut().enumerate() {
                            *d = src[start as usize + j * g.s[2]];
                        }
                    }
                }
            }
        });
}

/// Direct convolution of one input plane with one filter (groups of one channel).
fn depthwise_plane(x: &[f32], w: &[f32], bias: f32, g: &Geo, out: &mut [f32]) {
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
                        if g.s[2] == 1 {
                            for (d, &s) in dst.iter_mut().zip(&src[start..]) {
                                *d += wv * s;
                            }
                        } else {
                            for (j, d) in dst.iter_mut().enumerate() {
                                *d += wv * src[start + j * g.s[2]];
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Operator for Conv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let mut out = self.conv(inputs)?;
        if !self.fused {
            return Ok(vec![out]);
        }
        let z = opt_input_f32(&self.node, inputs, 3)?;
        let Tensor::F32(y) = &mut out else {
            return Err(invalid(&self.node, "internal: conv output is not f32"));
        };
        if let Some(z) = z {
            if z.shape() != y.shape() {
                return Err(shape_err(
                    &self.node,
                    format!(
                        "Z shape {:?} differs from the output {:?}",
                        z.shape(),
                        y.shape()
                    ),
                ));
            }
            *y += z;
        }
        if let Some(v) = y.as_slice_mut() {
            self.act.apply(v);
        }
        Ok(vec![out])
    }
}

impl Conv {
    fn conv(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let node = &self.node;
        let (x, w, b) = conv_operands(node, inputs)?;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let (m, c_g) = (w.shape()[0], w.shape()[1]);
        let group = self.group;
        if c_g * group != c || m % group != 0 {
            return Err(shape_err(
                node,
                format!(
                    "input {:?}, weight {:?} and group {group} disagree",
                    x.shape(),
                    w.shape()
                ),
            ));
        }
        let kernel = w.shape()[2..].to_vec();
        if let Some(k) = &self.kernel_attr
            && *k != kernel
        {
            return Err(shape_err(
                node,
                format!("kernel_shape {k:?} but weight spatial shape {kernel:?}"),
            ));
        }
        if let Some(b) = b
            && b.shape() != [m]
        {
            return Err(shape_err(
                node,
                format!("bias shape {:?}, expected [{m}]", b.shape()),
            ));
        }
        let win = Window::from_node(node, kernel.clone())?;
        let (out_sp, pads) = win.geometry(node, &x.shape()[2..])?;
        let geo = Geo {
            inp: to3(&x.shape()[2..], 1),
            out: to3(&out_sp, 1),
            k: to3(&kernel, 1),
            s: to3(&win.strides, 1),
            d: to3(&win.dilations, 1),
            p: to3(&pads, 0),
        };
        let mut out_shape = vec![n, m];
        out_shape.extend_from_slice(&out_sp);
        let total = checked_numel(node, &out_shape)?;
        let mut out = vec![0.0f32; total];
        if total == 0 || x.is_empty() {
            return tensor(node, &out_shape, out);
        }
        let xs = contiguous(x);
        let ws = contiguous(w);
        let bias: Option<Vec<f32>> = b.map(|b| b.iter().copied().collect());
        let (in_len, out_len, k_len) = (geo.in_len(), geo.out_len(), geo.k_len());
        let m_g = m / group;
        if c_g == 1 {
            let par_min = crate::kernels::min_len_for(out.len());
            out.par_chunks_mut(out_len)
                .enumerate()
                .with_min_len(par_min)
                .for_each(|(plane, o)| {
                    let (img, oc) = (plane / m, plane % m);
                    let ic = oc / m_g;
                    let xp = &xs[(img * c + ic) * in_len..][..in_len];
                    depthwise_plane(
                        xp,
                        &ws[oc * k_len..][..k_len],
                        bias.as_ref().map_or(0.0, |b| b[oc]),
                        &geo,
                        o,
                    );
                });
            return tensor(node, &out_shape, out);
        }
        let pointwise =
            geo.k == [1, 1, 1] && geo.s == [1, 1, 1] && geo.p == [0, 0, 0] && geo.out == geo.inp;
        let kk = c_g * k_len;
        let mut col = if pointwise {
            Vec::new()
        } else {
            vec![0.0f32; checked_numel(node, &[kk, out_len])?]
        };
        for img in 0..n {
            for g in 0..group {
                let xg = &xs[(img * c + g * c_g) * in_len..][..c_g * in_len];
                let og = &mut out[(img * m + g * m_g) * out_len..][..m_g * out_len];
                let beta = match &bias {
                    Some(bv) => {
                        for (row, &bb) in og.chunks_mut(out_len).zip(&bv[g * m_g..]) {
                            row.fill(bb);
                        }
                        1.0
                    }
                    None => 0.0,
                };
                let rhs = if pointwise {
                    MatRef::row_major(xg, c_g, out_len)?
                } else {
                    im2col(xg, &geo, &mut col);
                    MatRef::row_major(&col, kk, out_len)?
                };
                let lhs = match &self.packed {
                    Some(p) => Lhs::Packed(&p[g]),
                    None => Lhs::View(MatRef::row_major(
                        &ws[g * m_g * kk..(g + 1) * m_g * kk],
                        m_g,
                        kk,
                    )?),
                };
                kernels::sgemm(self.isa, 1.0, lhs, Rhs::View(rhs), beta, og, out_len)?;
            }
        }
        tensor(node, &out_shape, out)
    }
}
