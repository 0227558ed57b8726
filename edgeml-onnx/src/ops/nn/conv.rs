//! Conv (1-D, 2-D, 3-D; groups, dilations, strides, pads, auto_pad).
//!
//! Convolutions are GEMMs (`kernels::sgemm_packed_b`) with the weights packed once at
//! build time when they are constant: 1×1 stride-1 unpadded ones read the input rows;
//! other 2-D ones split the padded input into stride phases once (`im2col::ShiftB`),
//! after which each im2col row is a contiguous run and packing a panel is a plain
//! copy (the GEMM computes a grid as wide as the phase planes and drops the extra
//! columns, `kernels::ColMap`); the rest (3-D, or when the extra columns would cost
//! over 1/8 more panels) pack im2col columns straight into the GEMM's panels block by
//! block (no whole im2col buffer). Groups run as one parallel loop. The bias, `Z`
//! and the activation run as the driver's vector epilogue (`kernels::BiasAct`, one pass
//! over each finished row segment). Channels-of-one groups (depthwise) use a direct kernel
//! (`kernels::depthwise_plane` for 1-D/2-D: bias first, then the taps in row-major
//! order, accumulated in `f32`).
//!
//! A constant weight that [`crate::SparseMode::use_sparse`] picks (a pruned layer: at
//! least 80 % zeros under `Auto`, counted over the whole weight viewed as
//! `C/group·KH·KW` rows by `M` columns) is compressed per group at build time and
//! multiplied by the sparse kernel (`kernels::spmm_packed_b`) instead, over the same
//! im2col sources (input rows, phase planes or packed im2col columns) and with the same
//! bias, `Z` and activation epilogue. Depthwise convolutions (one input channel per group, more than
//! one group) stay on the direct kernel, which reads each filter's few taps anyway; a
//! convolution of a single-channel input (`group = 1`) can go sparse.
//!
//! `FusedConv` (domain `com.microsoft`, as onnxruntime defines it and as its optimizer
//! writes it into saved models) is the same operator with an optional fourth input `Z`
//! added to the result and an activation applied last:
//! `Y = activation(Conv(X, W, B) + Z)`, `activation` one of `Relu`, `LeakyRelu`
//! (`activation_params = [alpha]`), `Clip` (`[min, max]`), `Sigmoid`, `Tanh`,
//! `HardSigmoid` (`[alpha, beta]`). edgeml's own plan-time fusion emits it too.

use super::{ConvAttrs, checked_numel, contiguous, conv_operands, opt_input_f32, tensor, to3};
use crate::kernels::{self, Isa, Lhs, MatRef, PackB, PackedA, RowsB, SparseB};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::{Attrs, shape_mismatch, unsupported};
use crate::plan::budget::{Meter, Stop};
use crate::{Node, Result, Tensor};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

mod im2col;

use im2col::{Geo, Im2colB, ShiftB, depthwise_plane_nd};

/// `Conv` / `FusedConv`.
#[derive(Debug)]
pub(crate) struct Conv {
    node: Node,
    /// `group` and `kernel_shape`.
    attrs: ConvAttrs,
    isa: Isa,
    /// Per-group packed weights, when the weights were constant at build time.
    packed: Option<Vec<PackedA>>,
    /// Per-group weights compressed for the sparse kernel instead (each the
    /// [`SparseB`] of the group's `M/group × C/group·KH·KW` filters transposed), when
    /// they were constant and [`crate::SparseMode::use_sparse`] picked them.
    sparse: Option<Vec<SparseB>>,
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
    /// `x · sigmoid(x)` (SiLU).
    Silu,
    /// `x · max(0, min(1, x/6 + 1/2))` (ONNX `HardSwish`).
    HardSwish,
}

impl Activation {
    /// Parses onnxruntime's `activation` / `activation_params` attributes.
    fn from_node(node: &crate::Node) -> Result<Self> {
        let a = Attrs::new(node);
        let name = a.string("activation", "")?;
        let p = a.floats_opt("activation_params")?.unwrap_or_default();
        let param = |i: usize, default: f32| p.get(i).copied().unwrap_or(default);
        Ok(match name.as_str() {
            "" | "Identity" => Self::None,
            "Relu" => Self::Relu,
            "LeakyRelu" => Self::LeakyRelu(param(0, 0.01)),
            "Clip" => Self::Clip(param(0, f32::MIN), param(1, f32::MAX)),
            "Sigmoid" => Self::Sigmoid,
            "Tanh" => Self::Tanh,
            "HardSigmoid" => Self::HardSigmoid(param(0, 0.2), param(1, 0.5)),
            // Written only by the planner's SiLU fusion (onnxruntime has no such value).
            "Silu" => Self::Silu,
            "HardSwish" => Self::HardSwish,
            other => {
                return Err(unsupported(
                    node,
                    format!(
                        "activation {other:?} is not supported (Relu, LeakyRelu, Clip, \
                         Sigmoid, Tanh, HardSigmoid are)"
                    ),
                ));
            }
        })
    }

    /// The activation as the GEMM driver's epilogue computes it.
    fn vec_act(self) -> kernels::VecAct {
        use kernels::VecAct;
        match self {
            Self::None => VecAct::Clamp(f32::NEG_INFINITY, f32::INFINITY),
            Self::Relu => VecAct::Clamp(0.0, f32::INFINITY),
            Self::Clip(lo, hi) => VecAct::Clamp(lo, hi),
            Self::LeakyRelu(a) => VecAct::LeakyRelu(a),
            Self::HardSigmoid(a, b) => VecAct::HardSigmoid(a, b),
            Self::Sigmoid => VecAct::Sigmoid,
            Self::Tanh => VecAct::Tanh,
            Self::Silu => VecAct::Silu,
            Self::HardSwish => VecAct::HardSwish,
        }
    }

    /// Applies the activation in place, with the GEMM driver's epilogue code (one
    /// definition of each activation for every convolution path).
    pub(crate) fn apply(self, v: &mut [f32]) {
        if self != Self::None {
            kernels::apply_act(v, self.vec_act());
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
    let attrs = ConvAttrs::from_node(node)?;
    let group = attrs.group();
    let isa = kernels::best_isa();
    let (mut packed, mut sparse) = (None, None);
    if let Some(Some(Tensor::F32(w))) = ctx.constant_inputs.get(1) {
        let m = w.shape().first().copied().unwrap_or(0);
        if w.ndim() < 3 || m % group != 0 {
            return Err(shape_mismatch(
                node,
                format!("weight shape {:?} does not fit group {group}", w.shape()),
            ));
        }
        let c_g = w.shape()[1];
        let k = w.len() / m.max(1);
        let m_g = m / group;
        let depthwise = c_g == 1 && group > 1;
        let zeros = || w.iter().filter(|&&v| v == 0.0).count();
        if !depthwise && k > 0 && ctx.sparse.use_sparse(k, m, zeros()) {
            let data = contiguous(w);
            let mut v = Vec::with_capacity(group);
            for g in 0..group {
                let a = MatRef::row_major(&data[g * m_g * k..(g + 1) * m_g * k], m_g, k)?;
                v.push(SparseB::from_dense(a.t())?);
            }
            sparse = Some(v);
        } else if c_g != 1 {
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
        attrs,
        isa,
        packed,
        sparse,
        act: Activation::None,
        fused: false,
    }))
}

impl Operator for Conv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.conv(inputs)?])
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// `true` when the constant weight is multiplied with the sparse kernel (also for
    /// `FusedConv`, which is this type too).
    fn runs_sparse(&self) -> bool {
        self.sparse.is_some()
    }
}

/// Where a convolution's output goes.
enum Dst<'a> {
    /// A buffer the call allocates (from the recycled-buffer pool).
    Own(&'a mut Vec<f32>),
    /// A caller's buffer of exactly the output's size (e.g. a slice of a `Concat`).
    Into(&'a mut [f32]),
}

impl Conv {
    fn conv(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let mut owned = Vec::new();
        let shape = self.conv_to(inputs, Dst::Own(&mut owned))?;
        tensor(&self.node, &shape, owned)
    }

    /// The output shape for `inputs` (the checks of a run, without computing).
    ///
    /// # Errors
    /// As a run: operands that do not fit together or the attributes.
    pub(crate) fn output_shape(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<usize>> {
        let (x, w, _) = conv_operands(&self.node, inputs)?;
        let win = self.attrs.window(&self.node, &w.shape()[2..])?;
        let (out_sp, _) = win.geometry(&self.node, &x.shape()[2..])?;
        let mut out_shape = vec![x.shape()[0], w.shape()[0]];
        out_shape.extend_from_slice(&out_sp);
        Ok(out_shape)
    }

    /// Runs into `dst`, which must hold exactly the output's elements; returns the
    /// output shape.
    ///
    /// # Errors
    /// As a run; [`crate::Error::ShapeMismatch`] when `dst` has another size.
    pub(crate) fn conv_into(
        &self,
        inputs: &[Option<&Tensor>],
        dst: &mut [f32],
    ) -> Result<Vec<usize>> {
        self.conv_to(inputs, Dst::Into(dst))
    }

    fn conv_to(&self, inputs: &[Option<&Tensor>], dst: Dst<'_>) -> Result<Vec<usize>> {
        let node = &self.node;
        let (x, w, b) = conv_operands(node, inputs)?;
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let (m, c_g) = (w.shape()[0], w.shape()[1]);
        let group = self.attrs.group();
        if c_g * group != c || m % group != 0 {
            return Err(shape_mismatch(
                node,
                format!(
                    "input {:?}, weight {:?} and group {group} disagree",
                    x.shape(),
                    w.shape()
                ),
            ));
        }
        let kernel = &w.shape()[2..];
        self.attrs.check_kernel(node, kernel)?;
        if let Some(b) = b
            && b.shape() != [m]
        {
            return Err(shape_mismatch(
                node,
                format!("bias shape {:?}, expected [{m}]", b.shape()),
            ));
        }
        let win = super::Window::from_node(node, kernel.to_vec())?;
        let (out_sp, pads) = win.geometry(node, &x.shape()[2..])?;
        let geo = Geo {
            inp: to3(&x.shape()[2..], 1),
            out: to3(&out_sp, 1),
            k: to3(kernel, 1),
            s: to3(win.strides(), 1),
            d: to3(win.dilations(), 1),
            p: to3(&pads, 0),
        };
        let mut out_shape = vec![n, m];
        out_shape.extend_from_slice(&out_sp);
        let total = checked_numel(node, &out_shape)?;
        let z = if self.fused {
            opt_input_f32(node, inputs, 3)?
        } else {
            None
        };
        if let Some(z) = z
            && z.shape() != out_shape.as_slice()
        {
            return Err(shape_mismatch(
                node,
                format!(
                    "Z shape {:?} differs from the output {out_shape:?}",
                    z.shape()
                ),
            ));
        }
        let zs = z.map(contiguous);
        let zs = zs.as_deref();
        // The GEMM paths store every output element (C is overwritten, never read), so
        // they skip the zero-fill; the depthwise and empty-input paths keep it.
        let direct = c_g == 1 && self.sparse.is_none();
        let zeroed = total == 0 || x.is_empty() || direct;
        let out: &mut [f32] = match dst {
            Dst::Own(v) => {
                *v = if zeroed {
                    crate::buffers::take_f32(total)
                } else {
                    crate::buffers::take_f32_overwritten(total)
                };
                v.as_mut_slice()
            }
            Dst::Into(d) => {
                if d.len() != total {
                    return Err(shape_mismatch(
                        node,
                        format!(
                            "internal: destination of {} elements for output {out_shape:?}",
                            d.len()
                        ),
                    ));
                }
                if zeroed {
                    d.fill(0.0);
                }
                d
            }
        };
        let act = self.act;
        if total == 0 || x.is_empty() {
            // No input elements (an empty reduction): the bias, Z and activation remain.
            let out_len = geo.out_len();
            if out_len > 0 {
                for (plane, o) in out.chunks_mut(out_len).enumerate() {
                    o.fill(b.map_or(0.0, |b| b[[plane % m]]));
                    if let Some(z) = zs {
                        o.iter_mut()
                            .zip(&z[plane * out_len..])
                            .for_each(|(v, &zv)| *v += zv);
                    }
                    act.apply(o);
                }
            }
            return Ok(out_shape);
        }
        let xs = contiguous(x);
        let ws = contiguous(w);
        let bias: Option<Vec<f32>> = b.map(|b| b.iter().copied().collect());
        let bias = bias.as_deref();
        let (in_len, out_len, k_len) = (geo.in_len(), geo.out_len(), geo.k_len());
        let m_g = m / group;
        // Z and the activation, applied to a finished run of output plane `plane`
        // starting at position `col`, while it is still in cache.
        let finish = |plane: usize, col: usize, v: &mut [f32]| {
            if let Some(z) = zs {
                v.iter_mut()
                    .zip(&z[plane * out_len + col..])
                    .for_each(|(o, &zv)| *o += zv);
            }
            act.apply(v);
        };
        let needs_finish = zs.is_some() || act != Activation::None;
        // The run's cancellation and deadline, taken on this thread (the plane and group
        // loops and the GEMM's tiles run on pool workers) and polled once per block of
        // work.
        let stop = Stop::current();
        if direct {
            let dw2 = geo.depthwise_2d();
            let par_min = crate::kernels::min_len_for(out.len());
            let stopped = AtomicBool::new(false);
            let init = || (kernels::DepthwiseScratch::default(), Meter::new(&stop));
            out.par_chunks_mut(out_len)
                .enumerate()
                .with_min_len(par_min)
                .for_each_init(init, |(scratch, meter), (plane, o)| {
                    if stopped.load(Ordering::Relaxed) || meter.tick((out_len * k_len) as u64) {
                        stopped.store(true, Ordering::Relaxed);
                        return;
                    }
                    let (img, oc) = (plane / m, plane % m);
                    let ic = oc / m_g;
                    let xp = &xs[(img * c + ic) * in_len..][..in_len];
                    let wp = &ws[oc * k_len..][..k_len];
                    let bv = bias.map_or(0.0, |b| b[oc]);
                    match &dw2 {
                        Some(g2) => kernels::depthwise_plane(self.isa, xp, wp, bv, g2, scratch, o),
                        None => depthwise_plane_nd(xp, wp, bv, &geo, o),
                    }
                    if needs_finish {
                        finish(plane, 0, o);
                    }
                });
            if stopped.into_inner() {
                return Err(stop.error(&|| {
                    format!(
                        "a depthwise convolution of {planes} planes",
                        planes = out.len() / out_len
                    )
                }));
            }
            return Ok(out_shape);
        }
        let pointwise =
            geo.k == [1, 1, 1] && geo.s == [1, 1, 1] && geo.p == [0, 0, 0] && geo.out == geo.inp;
        let kk = c_g * k_len;
        let shifted = !pointwise && ShiftB::suits(&geo, kernels::panel_width(self.isa));
        // The bias, Z and the activation run as the driver's vector epilogue, in one pass
        // over each finished row segment.
        let vec_act = act.vec_act();
        // One group of one image; the groups of a grouped convolution run as one
        // parallel loop (each GEMM may split further when it is big enough).
        let run = |img: usize, g: usize, og: &mut [f32]| -> Result<()> {
            let xg = &xs[(img * c + g * c_g) * in_len..][..c_g * in_len];
            // Bias, Z and the activation on a finished run of output row `row`.
            let epi = |row: usize, col: usize, v: &mut [f32]| {
                let oc = g * m_g + row;
                if let Some(b) = bias {
                    let bv = b[oc];
                    v.iter_mut().for_each(|o| *o += bv);
                }
                if needs_finish {
                    finish(img * m + oc, col, v);
                }
            };
            if let Some(sp) = &self.sparse {
                let epi: Option<kernels::Epilogue<'_>> =
                    (bias.is_some() || needs_finish).then_some(&epi);
                let nr = kernels::SPARSE_PANEL;
                // Input rows and phase planes are read in place, im2col columns packed.
                let mut spmm = |rhs: &dyn PackB, map, in_place| {
                    kernels::spmm_packed_b_until(
                        self.isa, &sp[g], rhs, og, out_len, epi, map, in_place, &stop,
                    )
                };
                return if pointwise {
                    let starts: Vec<usize> = (0..c_g).map(|r| r * out_len).collect();
                    let rhs = RowsB::new(xg, c_g, out_len, out_len)?;
                    spmm(&rhs, None, Some((xg, &starts)))
                } else if ShiftB::suits(&geo, nr)
                    && let Some(rhs) = ShiftB::new(xg, &geo, c_g, nr)
                {
                    let map = (rhs.wq != geo.out[2]).then_some(kernels::ColMap {
                        pitch: rhs.wq,
                        width: geo.out[2],
                    });
                    spmm(&rhs, map, rhs.in_place_rows())
                } else {
                    let rhs = Im2colB {
                        x: xg,
                        geo,
                        channels: c_g,
                    };
                    spmm(&rhs, None, None)
                };
            }
            let bc = Some(kernels::BiasAct {
                bias: bias.map(|b| &b[g * m_g..(g + 1) * m_g]),
                z: zs.map(|z| {
                    (
                        &z[(img * m + g * m_g) * out_len..][..m_g * out_len],
                        out_len,
                    )
                }),
                act: vec_act,
            });
            let lhs = match &self.packed {
                Some(p) => Lhs::Packed(&p[g]),
                None => Lhs::View(MatRef::row_major(
                    &ws[g * m_g * kk..(g + 1) * m_g * kk],
                    m_g,
                    kk,
                )?),
            };
            if pointwise && out_len == 1 {
                // A 1×1 map (squeeze-excitation FCs): one matrix–vector product.
                kernels::matvec(&ws[g * m_g * kk..(g + 1) * m_g * kk], kk, xg, og);
                if let Some(b) = bias {
                    og.iter_mut()
                        .zip(&b[g * m_g..])
                        .for_each(|(o, &bv)| *o += bv);
                }
                // Output planes of one element: `finish` of the first plane covers them all.
                finish(img * m + g * m_g, 0, og);
            } else if pointwise {
                let rhs = RowsB::new(xg, c_g, out_len, out_len)?;
                kernels::sgemm_packed_b_until(
                    self.isa, lhs, &rhs, og, out_len, None, None, bc, &stop,
                )?;
            } else if shifted
                && let Some(rhs) = ShiftB::new(xg, &geo, c_g, kernels::panel_width(self.isa))
            {
                // No junk columns (e.g. a strided 1×1): C is written in place.
                let map = (rhs.wq != geo.out[2]).then_some(kernels::ColMap {
                    pitch: rhs.wq,
                    width: geo.out[2],
                });
                kernels::sgemm_packed_b_until(
                    self.isa, lhs, &rhs, og, out_len, None, map, bc, &stop,
                )?;
            } else {
                let rhs = Im2colB {
                    x: xg,
                    geo,
                    channels: c_g,
                };
                kernels::sgemm_packed_b_until(
                    self.isa, lhs, &rhs, og, out_len, None, None, bc, &stop,
                )?;
            }
            Ok(())
        };
        for (img, oi) in out.chunks_mut(m * out_len).enumerate() {
            if group > 1 {
                let par_min = kernels::min_len_for(oi.len());
                oi.par_chunks_mut(m_g * out_len)
                    .enumerate()
                    .with_min_len(par_min)
                    .try_for_each(|(g, og)| run(img, g, og))?;
            } else {
                run(img, 0, oi)?;
            }
        }
        Ok(out_shape)
    }
}
