//! LSTM and GRU (forward, reverse, bidirectional; `sequence_lens`, initial states,
//! peepholes, `clip`, `input_forget`, `linear_before_reset`, `layout`, custom
//! activations).
//!
//! The input projection `X·Wᵀ` of all time steps is one GEMM; each step then multiplies
//! the hidden state by the recurrent weights (packed at build time when constant).

use super::{contiguous, input_f32, tensor};
use crate::kernels::{self, Isa, Lhs, MatRef, PackedB, Rhs};
use crate::op::{BuildContext, Operator};
use crate::ops::attr::{Attrs, describe, invalid, shape_mismatch, unsupported};
use crate::plan::budget::Stop;
use crate::{Error, Node, Result, Tensor};

/// An RNN activation function with its parameters.
#[derive(Debug, Clone, Copy)]
enum Act {
    Sigmoid,
    Tanh,
    Relu,
    HardSigmoid(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    Affine(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Act {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => x.tanh(),
            Act::Relu => x.max(0.0),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::Affine(a, b) => a * x + b,
            Act::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => (1.0 + x.exp()).ln(),
        }
    }
}

/// Parses `activations` / `activation_alpha` / `activation_beta`; parameters are
/// consumed in order by the functions that take them (as onnxruntime does).
fn parse_acts(node: &Node, per_dir: usize, dirs: usize, defaults: &[&str]) -> Result<Vec<Act>> {
    let a = Attrs::new(node);
    let mut names = a
        .strings_opt("activations")?
        .unwrap_or_else(|| defaults.iter().map(|s| (*s).to_owned()).collect());
    if names.len() == per_dir && dirs == 2 {
        names.extend_from_within(..);
    }
    if names.len() < per_dir * dirs {
        return Err(invalid(
            node,
            format!(
                "activations has {} entries, expected {}",
                names.len(),
                per_dir * dirs
            ),
        ));
    }
    if dirs == 1 && names.len() > per_dir {
        names.truncate(per_dir);
    }
    let alphas = a.floats_opt("activation_alpha")?.unwrap_or_default();
    let betas = a.floats_opt("activation_beta")?.unwrap_or_default();
    let (mut ai, mut bi) = (alphas.into_iter(), betas.into_iter());
    names
        .iter()
        .map(|n| {
            let mut a = |d: f32| ai.next().unwrap_or(d);
            Ok(match n.to_ascii_lowercase().as_str() {
                "sigmoid" => Act::Sigmoid,
                "tanh" => Act::Tanh,
                "relu" => Act::Relu,
                "hardsigmoid" => Act::HardSigmoid(a(0.2), bi.next().unwrap_or(0.5)),
                "leakyrelu" => Act::LeakyRelu(a(0.01)),
                "thresholdedrelu" => Act::ThresholdedRelu(a(1.0)),
                "scaledtanh" => Act::ScaledTanh(a(1.0), bi.next().unwrap_or(1.0)),
                "affine" => Act::Affine(a(1.0), bi.next().unwrap_or(0.0)),
                "elu" => Act::Elu(a(1.0)),
                "softsign" => Act::Softsign,
                "softplus" => Act::Softplus,
                other => return Err(unsupported(node, format!("activation {other:?}"))),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Lstm { input_forget: bool },
    Gru { linear_before_reset: bool },
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm { .. } => 4,
            Cell::Gru { .. } => 3,
        }
    }
}

/// Packed `Wᵀ` (input × G·h) and `Rᵀ` split as `[0, split)` and `[split, G·h)` columns.
#[derive(Debug)]
struct DirWeights {
    w: PackedB,
    r_a: PackedB,
    r_b: Option<PackedB>,
}

#[derive(Debug)]
struct Rnn {
    node: Node,
    cell: Cell,
    reverse: Vec<bool>,
    hidden_attr: Option<usize>,
    acts: Vec<Act>,
    clip: Option<f32>,
    batch_major: bool,
    isa: Isa,
    packed: Option<Vec<DirWeights>>,
}

fn pack_dir(
    isa: Isa,
    cell: Cell,
    w: &[f32],
    r: &[f32],
    gh: usize,
    input: usize,
    h: usize,
) -> Result<DirWeights> {
    let wt = PackedB::pack(isa, MatRef::row_major(w, gh, input)?.t());
    Ok(match cell {
        Cell::Lstm { .. } => DirWeights {
            w: wt,
            r_a: PackedB::pack(isa, MatRef::row_major(r, gh, h)?.t()),
            r_b: None,
        },
        Cell::Gru { .. } => DirWeights {
            w: wt,
            r_a: PackedB::pack(isa, MatRef::row_major(&r[..2 * h * h], 2 * h, h)?.t()),
            r_b: Some(PackedB::pack(
                isa,
                MatRef::row_major(&r[2 * h * h..], h, h)?.t(),
            )),
        },
    })
}

fn build(ctx: &BuildContext<'_>, cell: Cell) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let a = Attrs::new(node);
    let reverse = match a.string("direction", "forward")?.as_str() {
        "forward" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        other => return Err(invalid(node, format!("unknown direction {other:?}"))),
    };
    let (per_dir, defaults): (usize, &[&str]) = match cell {
        Cell::Lstm { .. } => (3, &["Sigmoid", "Tanh", "Tanh"]),
        Cell::Gru { .. } => (2, &["Sigmoid", "Tanh"]),
    };
    let acts = parse_acts(node, per_dir, reverse.len(), defaults)?;
    let hidden_attr = match a.int("hidden_size", 0)? {
        0 => None,
        h if h > 0 => Some(h as usize),
        h => return Err(invalid(node, format!("hidden_size {h} is negative"))),
    };
    let clip = a.float_opt("clip")?;
    let isa = kernels::best_isa();
    let consts = (
        ctx.constant_inputs.get(1).copied().flatten(),
        ctx.constant_inputs.get(2).copied().flatten(),
    );
    let mut packed = None;
    if let (Some(Tensor::F32(w)), Some(Tensor::F32(r))) = consts {
        let g = cell.gates();
        if w.ndim() == 3
            && r.ndim() == 3
            && w.shape()[0] == reverse.len()
            && r.shape()[0] == reverse.len()
            && r.shape()[1] == g * r.shape()[2]
            && w.shape()[1] == r.shape()[1]
        {
            let (gh, h, input) = (r.shape()[1], r.shape()[2], w.shape()[2]);
            let (wd, rd) = (contiguous(w), contiguous(r));
            let mut v = Vec::new();
            for d in 0..reverse.len() {
                v.push(pack_dir(
                    isa,
                    cell,
                    &wd[d * gh * input..][..gh * input],
                    &rd[d * gh * h..][..gh * h],
                    gh,
                    input,
                    h,
                )?);
            }
            packed = Some(v);
        }
    }
    Ok(Box::new(Rnn {
        node: node.clone(),
        cell,
        reverse,
        hidden_attr,
        acts,
        clip,
        batch_major: a.int("layout", 0)? != 0,
        isa,
        packed,
    }))
}

pub(super) fn build_lstm(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let input_forget = Attrs::new(ctx.node).int("input_forget", 0)? != 0;
    build(ctx, Cell::Lstm { input_forget })
}

pub(super) fn build_gru(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let lbr = Attrs::new(ctx.node).int("linear_before_reset", 0)? != 0;
    build(
        ctx,
        Cell::Gru {
            linear_before_reset: lbr,
        },
    )
}

/// Swaps the first two axes of a `[a, b, inner]` buffer.
fn swap01(x: &[f32], a: usize, b: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * inner..][..inner].copy_from_slice(&x[(i * b + j) * inner..][..inner]);
        }
    }
    out
}

/// An optional input as contiguous f32 data with its shape checked.
fn opt_checked(
    node: &Node,
    inputs: &[Option<&Tensor>],
    i: usize,
    name: &str,
    shape: &[usize],
) -> Result<Option<Vec<f32>>> {
    match inputs.get(i).copied().flatten() {
        None => Ok(None),
        Some(_) => {
            let t = input_f32(node, inputs, i)?;
            if t.shape() != shape {
                return Err(shape_mismatch(
                    node,
                    format!("{name} has shape {:?}, expected {shape:?}", t.shape()),
                ));
            }
            Ok(Some(contiguous(t).into_owned()))
        }
    }
}

impl Operator for Rnn {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input_f32(node, inputs, 0)?;
        let w = input_f32(node, inputs, 1)?;
        let r = input_f32(node, inputs, 2)?;
        let nd = self.reverse.len();
        let g = self.cell.gates();
        if x.ndim() != 3 || w.ndim() != 3 || r.ndim() != 3 {
            return Err(shape_mismatch(
                node,
                format!(
                    "X {:?}, W {:?}, R {:?} must be 3-D",
                    x.shape(),
                    w.shape(),
                    r.shape()
                ),
            ));
        }
        let h = self.hidden_attr.unwrap_or(r.shape()[2]);
        let (seq, batch, input) = if self.batch_major {
            (x.shape()[1], x.shape()[0], x.shape()[2])
        } else {
            (x.shape()[0], x.shape()[1], x.shape()[2])
        };
        let gh = g * h;
        if w.shape() != [nd, gh, input] || r.shape() != [nd, gh, h] {
            return Err(shape_mismatch(
                node,
                format!(
                    "W {:?} / R {:?} do not match {nd} direction(s), {g} gates, hidden {h}, input {input}",
                    w.shape(),
                    r.shape()
                ),
            ));
        }
        let bias = opt_checked(node, inputs, 3, "B", &[nd, 2 * gh])?;
        let lens: Vec<usize> = match inputs.get(4).copied().flatten() {
            None => vec![seq; batch],
            Some(Tensor::I32(l)) if l.shape() == [batch] => l
                .iter()
                .map(|&v| usize::try_from(v).ok().filter(|&v| v <= seq))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{}: sequence_lens entries must lie in 0..={seq}",
                        describe(node)
                    ))
                })?,
            Some(Tensor::I64(l)) if l.shape() == [batch] => l
                .iter()
                .map(|&v| usize::try_from(v).ok().filter(|&v| v <= seq))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{}: sequence_lens entries must lie in 0..={seq}",
                        describe(node)
                    ))
                })?,
            Some(t) => {
                return Err(shape_mismatch(
                    node,
                    format!(
                        "sequence_lens must be int32 [{batch}], got {:?} {:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
        };
        let state_shape = if self.batch_major {
            [batch, nd, h]
        } else {
            [nd, batch, h]
        };
        let fix_state = |v: Option<Vec<f32>>| {
            v.map(|s| {
                if self.batch_major {
                    swap01(&s, batch, nd, h)
                } else {
                    s
                }
            })
        };
        let init_h = fix_state(opt_checked(node, inputs, 5, "initial_h", &state_shape)?);
        let (init_c, peep) = match self.cell {
            Cell::Lstm { .. } => (
                fix_state(opt_checked(node, inputs, 6, "initial_c", &state_shape)?),
                opt_checked(node, inputs, 7, "P", &[nd, 3 * h])?,
            ),
            Cell::Gru { .. } => (None, None),
        };
        let xs = contiguous(x);
        let xs = if self.batch_major {
            std::borrow::Cow::Owned(swap01(&xs, batch, seq, input))
        } else {
            xs
        };
        let (wd, rd) = (contiguous(w), contiguous(r));
        let mut y = vec![0.0f32; seq * nd * batch * h];
        let mut yh = vec![0.0f32; nd * batch * h];
        let mut yc = vec![0.0f32; nd * batch * h];
        let per_dir = self.acts.len() / nd;
        let clip = |v: f32| match self.clip {
            Some(c) => v.clamp(-c, c),
            None => v,
        };
        let run = crate::plan::budget::current();
        for d in 0..nd {
            let owned;
            let dw = match &self.packed {
                Some(p) => &p[d],
                None => {
                    owned = pack_dir(
                        self.isa,
                        self.cell,
                        &wd[d * gh * input..][..gh * input],
                        &rd[d * gh * h..][..gh * h],
                        gh,
                        input,
                        h,
                    )?;
                    &owned
                }
            };
            let acts = &self.acts[d * per_dir..(d + 1) * per_dir];
            // Input projection of every step, plus the biases that are plain additions.
            let mut xw = vec![0.0f32; seq * batch * gh];
            if seq * batch > 0 {
                // One product over the whole sequence: polled for the run's deadline
                // and cancellation inside (the time steps check between them).
                kernels::sgemm_until(
                    self.isa,
                    1.0,
                    Lhs::View(MatRef::row_major(&xs, seq * batch, input)?),
                    Rhs::Packed(&dw.w),
                    0.0,
                    &mut xw,
                    gh,
                    &Stop::current(),
                )?;
            }
            let mut rbh = vec![0.0f32; h];
            if let Some(b) = &bias {
                let (wb, rb) = (&b[d * 2 * gh..][..gh], &b[d * 2 * gh + gh..][..gh]);
                let lbr = matches!(
                    self.cell,
                    Cell::Gru {
                        linear_before_reset: true
                    }
                );
                let mut add = wb.to_vec();
                for (j, a) in add.iter_mut().enumerate() {
                    if !(lbr && j >= 2 * h) {
                        *a += rb[j];
                    }
                }
                if lbr {
                    rbh.copy_from_slice(&rb[2 * h..]);
                }
                for row in xw.chunks_mut(gh) {
                    row.iter_mut().zip(&add).for_each(|(v, a)| *v += a);
                }
            }
            let mut hs = init_h.as_ref().map_or_else(
                || vec![0.0f32; batch * h],
                |v| v[d * batch * h..][..batch * h].to_vec(),
            );
            let mut cs = init_c.as_ref().map_or_else(
                || vec![0.0f32; batch * h],
                |v| v[d * batch * h..][..batch * h].to_vec(),
            );
            let pp = peep.as_ref().map(|p| &p[d * 3 * h..][..3 * h]);
            let ra_cols = match self.cell {
                Cell::Lstm { .. } => gh,
                Cell::Gru { .. } => 2 * h,
            };
            let mut hr = vec![0.0f32; batch * ra_cols];
            let mut hr2 = vec![0.0f32; batch * h];
            let mut rh = vec![0.0f32; batch * h];
            for s in 0..seq {
                // A long sequence is a long step: the run's deadline and cancellation
                // are checked before every time step, not only between operators.
                run.check(&|| format!("{}, time step {s} of {seq}", describe(node)))?;
                let active: Vec<(usize, usize)> = (0..batch)
                    .filter(|&b| s < lens[b])
                    .map(|b| (b, if self.reverse[d] { lens[b] - 1 - s } else { s }))
                    .collect();
                if active.is_empty() {
                    break;
                }
                kernels::sgemm(
                    self.isa,
                    1.0,
                    Lhs::View(MatRef::row_major(&hs, batch, h)?),
                    Rhs::Packed(&dw.r_a),
                    0.0,
                    &mut hr,
                    ra_cols,
                )?;
                match self.cell {
                    Cell::Lstm { input_forget } => {
                        let (f, gc, hc) = (acts[0], acts[1], acts[2]);
                        for &(b, t) in &active {
                            let xr = &xw[(t * batch + b) * gh..][..gh];
                            let hrr = &hr[b * gh..][..gh];
                            for j in 0..h {
                                let c_prev = cs[b * h + j];
                                let pre = |q: usize| xr[q * h + j] + hrr[q * h + j];
                                let (pi, po, pf) =
                                    pp.map_or((0.0, 0.0, 0.0), |p| (p[j], p[h + j], p[2 * h + j]));
                                let it = f.apply(clip(pre(0) + pi * c_prev));
                                let ft = if input_forget {
                                    1.0 - it
                                } else {
                                    f.apply(clip(pre(2) + pf * c_prev))
                                };
                                let ct = gc.apply(clip(pre(3)));
                                let c_new = ft * c_prev + it * ct;
                                let ot = f.apply(clip(pre(1) + po * c_new));
                                cs[b * h + j] = c_new;
                                hs[b * h + j] = ot * hc.apply(c_new);
                            }
                        }
                    }
                    Cell::Gru {
                        linear_before_reset,
                    } => {
                        let (f, gc) = (acts[0], acts[1]);
                        let rb = dw
                            .r_b
                            .as_ref()
                            .ok_or_else(|| invalid(node, "internal: GRU weights not split"))?;
                        let mut z = vec![0.0f32; batch * h];
                        let mut rr = vec![0.0f32; batch * h];
                        for &(b, t) in &active {
                            let xr = &xw[(t * batch + b) * gh..][..gh];
                            for j in 0..h {
                                z[b * h + j] = f.apply(clip(xr[j] + hr[b * 2 * h + j]));
                                rr[b * h + j] = f.apply(clip(xr[h + j] + hr[b * 2 * h + h + j]));
                            }
                        }
                        if linear_before_reset {
                            kernels::sgemm(
                                self.isa,
                                1.0,
                                Lhs::View(MatRef::row_major(&hs, batch, h)?),
                                Rhs::Packed(rb),
                                0.0,
                                &mut hr2,
                                h,
                            )?;
                        } else {
                            for (v, (&a, &bb)) in rh.iter_mut().zip(rr.iter().zip(&hs)) {
                                *v = a * bb;
                            }
                            kernels::sgemm(
                                self.isa,
                                1.0,
                                Lhs::View(MatRef::row_major(&rh, batch, h)?),
                                Rhs::Packed(rb),
                                0.0,
                                &mut hr2,
                                h,
                            )?;
                        }
                        for &(b, t) in &active {
                            let xr = &xw[(t * batch + b) * gh..][..gh];
                            for j in 0..h {
                                let k = b * h + j;
                                let pre = if linear_before_reset {
                                    xr[2 * h + j] + rr[k] * (hr2[k] + rbh[j])
                                } else {
                                    xr[2 * h + j] + hr2[k]
                                };
                                let ht = gc.apply(clip(pre));
                                hs[k] = (1.0 - z[k]) * ht + z[k] * hs[k];
                            }
                        }
                    }
                }
                for &(b, t) in &active {
                    y[((t * nd + d) * batch + b) * h..][..h].copy_from_slice(&hs[b * h..][..h]);
                }
            }
            yh[d * batch * h..][..batch * h].copy_from_slice(&hs);
            yc[d * batch * h..][..batch * h].copy_from_slice(&cs);
        }
        let (y, yh, yc, y_shape) = if self.batch_major {
            let mut yb = vec![0.0f32; y.len()];
            for s in 0..seq {
                for d in 0..nd {
                    for b in 0..batch {
                        yb[((b * seq + s) * nd + d) * h..][..h]
                            .copy_from_slice(&y[((s * nd + d) * batch + b) * h..][..h]);
                    }
                }
            }
            (
                yb,
                swap01(&yh, nd, batch, h),
                swap01(&yc, nd, batch, h),
                vec![batch, seq, nd, h],
            )
        } else {
            (y, yh, yc, vec![seq, nd, batch, h])
        };
        let mut out = vec![tensor(node, &y_shape, y)?, tensor(node, &state_shape, yh)?];
        if matches!(self.cell, Cell::Lstm { .. }) {
            out.push(tensor(node, &state_shape, yc)?);
        }
        out.truncate(node.outputs.len().max(1));
        Ok(out)
    }
}
