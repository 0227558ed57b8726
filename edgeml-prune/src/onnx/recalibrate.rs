//! Least-squares recalibration of pruned layers ([`Recalibrate`]).
//!
//! After pruning, each layer's kept weights and bias are refit so that, on calibration
//! data, the layer reproduces what the *original* model's layer computed — the
//! layer-wise reconstruction of SparseGPT/OBC and of He et al.'s channel pruning,
//! solved exactly (ridge-regularised normal equations, Cholesky in f64) rather than by
//! their approximate updates. Layers are refit one after another in graph order, each on
//! the inputs that the pruned model *with the earlier refits applied* gives it, so later
//! layers absorb what earlier ones could not recover.

use super::display_name;
use crate::error::{Error, Result};
use edgeml_onnx::ops::nn::ConvAttrs;
use edgeml_onnx::{Attribute, Graph, GraphOptLevel, Model, Node, Plan, PlanOptions, Tensor};
use ndarray::{ArrayD, IxDyn};
use serde::Serialize;
use std::collections::HashMap;

/// Calibration data and settings for least-squares recalibration
/// ([`PruneConfig::recalibrate`](super::PruneConfig::recalibrate), `edgeml prune
/// --recalibrate DATA`).
#[derive(Debug, Clone, PartialEq)]
pub struct Recalibrate {
    /// Batches for the model's single input, each a whole input tensor (batch axis
    /// first). A few hundred samples are typical; every layer sees every sample.
    pub batches: Vec<ArrayD<f32>>,
    /// Ridge dampening `λ` towards the pruned weights, as a fraction of the mean
    /// diagonal of each layer's Gram matrix (default 0.01, SparseGPT's `percdamp`); it
    /// keeps the fit stable when features are collinear or few samples are given, and
    /// leaves the weight of a feature the data never shows as it was.
    pub dampening: f64,
    /// Layers with more input features than this (`C_in·kh·kw` for a Conv, `K` for
    /// Gemm/MatMul) are left as they are (default 4096). Rows whose weights are all
    /// non-zero (dense and channel-pruned layers) share one factorisation; every other
    /// row mask costs up to `features³/3` operations, and a layer whose solves and
    /// error evaluations would exceed 10¹¹ operations (about a minute) is left as it
    /// is, with a note.
    pub max_features: usize,
}

impl Recalibrate {
    /// Recalibration on `batches` with the default dampening (0.01) and feature limit
    /// (4096).
    pub fn new(batches: Vec<ArrayD<f32>>) -> Self {
        Recalibrate {
            batches,
            dampening: 0.01,
            max_features: 4096,
        }
    }
}

/// One layer considered by the recalibration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefitReport {
    /// The node's name (its first output when unnamed).
    pub node: String,
    /// The node's op type.
    pub op_type: String,
    /// Relative error `‖Y − Y₀‖ / ‖Y₀‖` of the layer's output before the refit: pruned
    /// weights on the pruned model's inputs, against the original model's output (kept
    /// channels). `None` when the layer was not refit.
    pub error_before: Option<f64>,
    /// The same after the refit.
    pub error_after: Option<f64>,
    /// Rows of the fit (samples, times output positions for a Conv).
    pub rows: usize,
    /// Why the layer was left as it is, if it was.
    pub note: Option<String>,
}

/// How a layer computes `y = W·f + b` over feature rows `f`.
enum Kind {
    /// `Gemm` (`transA = 0`): rows of `A`; `alpha` scales `W`, `beta` the bias.
    Gemm { alpha: f64, beta: f64 },
    /// 2-D `MatMul`, rows of the flattened `A`; the bias is a following `Add`'s
    /// per-channel initializer when there is one.
    MatMul,
    /// 2-D `Conv` with `group = 1`: im2col rows.
    Conv,
}

/// A refittable layer of the pruned graph.
struct Target {
    node: usize,
    kind: Kind,
    /// The weight initializer and its canonical `[out, in]` permutation.
    weight: String,
    perm: Vec<usize>,
    /// The bias initializer, when the layer has a per-channel one (or may take one).
    bias: Option<String>,
    /// Whether a missing bias initializer should be created.
    add_bias: bool,
    /// The value compared with the original model's (the layer's output, or the
    /// bias `Add`'s).
    output: String,
}

fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    match n.attr(name) {
        Some(Attribute::Int(i)) => *i,
        _ => default,
    }
}

fn float_attr(n: &Node, name: &str, default: f32) -> f32 {
    match n.attr(name) {
        Some(Attribute::Float(f)) => *f,
        _ => default,
    }
}

fn f32_init<'g>(g: &'g Graph, name: &str) -> Option<&'g ArrayD<f32>> {
    match g.initializer(name) {
        Some(Tensor::F32(a)) => Some(a),
        _ => None,
    }
}

fn uses(g: &Graph, name: &str) -> usize {
    g.nodes
        .iter()
        .flat_map(|n| &n.inputs)
        .filter(|i| *i == name)
        .count()
        + g.outputs.iter().filter(|o| o.name == name).count()
}

/// A 1-D (or `[1, N]`) f32 initializer of length `n` used only once.
fn per_channel(g: &Graph, name: &str, n: usize) -> bool {
    f32_init(g, name)
        .is_some_and(|a| a.len() == n && (a.ndim() == 1 || (a.ndim() == 2 && a.shape()[0] == 1)))
        && uses(g, name) == 1
}

/// The layer at node `i`, or why it cannot be refit.
fn target(g: &Graph, i: usize) -> std::result::Result<Target, String> {
    let n = &g.nodes[i];
    let weight = n.inputs.get(1).cloned().unwrap_or_default();
    let w = f32_init(g, &weight)
        .ok_or_else(|| format!("weight `{weight}` is not an f32 initializer"))?;
    if uses(g, &weight) != 1 {
        return Err(format!("weight `{weight}` is shared"));
    }
    let out = n.outputs.first().cloned().unwrap_or_default();
    match n.op_type.as_str() {
        "Gemm" => {
            if int_attr(n, "transA", 0) != 0 || w.ndim() != 2 {
                return Err("Gemm with transA = 1".into());
            }
            let alpha = f64::from(float_attr(n, "alpha", 1.0));
            let beta = f64::from(float_attr(n, "beta", 1.0));
            let transb = int_attr(n, "transB", 0) != 0;
            let out_ch = if transb { w.shape()[0] } else { w.shape()[1] };
            let bias = n.inputs.get(2).filter(|b| !b.is_empty()).cloned();
            if alpha == 0.0 || !alpha.is_finite() || !beta.is_finite() {
                return Err("Gemm with alpha = 0 or a non-finite alpha/beta".into());
            }
            match &bias {
                Some(b) if !per_channel(g, b, out_ch) || beta == 0.0 => {
                    return Err(format!(
                        "bias `{b}` is not a private per-channel initializer"
                    ));
                }
                _ => {}
            }
            Ok(Target {
                node: i,
                kind: Kind::Gemm { alpha, beta },
                weight,
                perm: if transb { vec![0, 1] } else { vec![1, 0] },
                add_bias: bias.is_none() && beta != 0.0,
                bias,
                output: out,
            })
        }
        "MatMul" => {
            if w.ndim() != 2 {
                return Err(format!("MatMul weight of rank {}", w.ndim()));
            }
            let consumers: Vec<usize> = (0..g.nodes.len())
                .filter(|&j| g.nodes[j].inputs.contains(&out))
                .collect();
            let mut output = out.clone();
            let mut bias = None;
            if let [j] = consumers[..] {
                let c = &g.nodes[j];
                if c.op_type == "Add"
                    && c.inputs.len() == 2
                    && !g.outputs.iter().any(|o| o.name == out)
                {
                    let other = if c.inputs[0] == out {
                        &c.inputs[1]
                    } else {
                        &c.inputs[0]
                    };
                    if per_channel(g, other, w.shape()[1])
                        && f32_init(g, other).is_some_and(|a| a.ndim() == 1)
                    {
                        bias = Some(other.clone());
                        output = c.outputs.first().cloned().unwrap_or_default();
                    }
                }
            }
            Ok(Target {
                node: i,
                kind: Kind::MatMul,
                weight,
                perm: vec![1, 0],
                bias,
                add_bias: false,
                output,
            })
        }
        "Conv" => {
            let attrs = ConvAttrs::from_node(n).map_err(|e| e.to_string())?;
            if attrs.group() != 1 {
                return Err(format!("Conv with group = {}", attrs.group()));
            }
            if w.ndim() != 4 {
                return Err(format!("{}-D Conv (only 2-D is refit)", w.ndim() - 2));
            }
            let bias = n.inputs.get(2).filter(|b| !b.is_empty()).cloned();
            if let Some(b) = bias.as_ref().filter(|b| !per_channel(g, b, w.shape()[0])) {
                return Err(format!(
                    "bias `{b}` is not a private per-channel initializer"
                ));
            }
            Ok(Target {
                node: i,
                kind: Kind::Conv,
                weight,
                perm: vec![0, 1, 2, 3],
                add_bias: bias.is_none(),
                bias,
                output: out,
            })
        }
        op => Err(format!("{op} is not refit")),
    }
}

/// The model's single graph input that is not an initializer.
fn single_input(m: &Model) -> Result<String> {
    let g = &m.graph;
    let ins: Vec<&str> = g.runtime_inputs().map(|i| i.name.as_str()).collect();
    match ins[..] {
        [one] => Ok(one.to_string()),
        _ => Err(Error::InvalidArgument(format!(
            "recalibration needs a model with one input, this one has {}",
            ins.len()
        ))),
    }
}

fn model_err(what: &str) -> impl Fn(edgeml_onnx::Error) -> Error + '_ {
    move |e| Error::InvalidArgument(format!("recalibration: {what}: {e}"))
}

/// Runs `model` over the batches and returns the values named `name` (the batches
/// themselves when `name` is the input).
fn collect(
    model: &Model,
    input: &str,
    name: &str,
    batches: &[ArrayD<f32>],
) -> Result<Vec<ArrayD<f32>>> {
    if name == input {
        return Ok(batches.to_vec());
    }
    let mut options = PlanOptions::default();
    options.optimization = GraphOptLevel::Disabled;
    let plan = Plan::new(model, options).map_err(model_err("planning the model"))?;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let x = Tensor::F32(b.clone());
        let mut seen = None;
        let outputs = plan
            .run_observed(&[(input, &x)], &mut |n, t| {
                if n == name {
                    seen = t.as_f32().cloned();
                }
            })
            .map_err(model_err("running the model"))?;
        if seen.is_none() {
            seen = outputs
                .into_iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, t)| t.as_f32().cloned());
        }
        out.push(seen.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "recalibration: `{name}` is not an f32 value of the model"
            ))
        })?);
    }
    Ok(out)
}

/// Normal equations `G = Σ f̃f̃ᵀ`, `B = Σ f̃yᵀ` over rows `f̃ = [f; 1]`.
struct Normal {
    k: usize,
    n: usize,
    g: Vec<f64>,
    b: Vec<f64>,
    yy: Vec<f64>,
    rows: usize,
}

impl Normal {
    fn new(k: usize, n: usize) -> Self {
        Normal {
            k,
            n,
            g: vec![0.0; (k + 1) * (k + 1)],
            b: vec![0.0; (k + 1) * n],
            yy: vec![0.0; n],
            rows: 0,
        }
    }

    /// Adds one row: features `f` (length k) and targets `y` (length n).
    fn add(&mut self, f: &[f64], y: &[f64]) {
        let k1 = self.k + 1;
        let at = |i: usize| if i < self.k { f[i] } else { 1.0 };
        for i in 0..k1 {
            let fi = at(i);
            if fi == 0.0 {
                continue;
            }
            let row = &mut self.g[i * k1..(i + 1) * k1];
            for (j, gij) in row.iter_mut().enumerate().take(self.k) {
                *gij += fi * f[j];
            }
            row[self.k] += fi;
            for (bj, &yj) in self.b[i * self.n..(i + 1) * self.n].iter_mut().zip(y) {
                *bj += fi * yj;
            }
        }
        for (a, &v) in self.yy.iter_mut().zip(y) {
            *a += v * v;
        }
        self.rows += 1;
    }

    /// `‖F̃w̃ − y_c‖²` for column `c` and the augmented weights `w` (bias last).
    fn sq_error(&self, c: usize, w: &[f64]) -> f64 {
        let k1 = self.k + 1;
        let mut quad = 0.0;
        let mut lin = 0.0;
        for i in 0..k1 {
            if w[i] == 0.0 {
                continue;
            }
            let gi = &self.g[i * k1..(i + 1) * k1];
            quad += w[i] * gi.iter().zip(w).map(|(g, w)| g * w).sum::<f64>();
            lin += w[i] * self.b[i * self.n + c];
        }
        (quad - 2.0 * lin + self.yy[c]).max(0.0)
    }
}

/// Factors a symmetric positive definite `A` (`s×s`, row-major) in place into its
/// lower Cholesky factor; `false` if `A` is not positive definite.
fn cholesky(a: &mut [f64], s: usize) -> bool {
    for j in 0..s {
        let mut d = a[j * s + j];
        for k in 0..j {
            d -= a[j * s + k] * a[j * s + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * s + j] = d;
        for i in j + 1..s {
            let mut v = a[i * s + j];
            for k in 0..j {
                v -= a[i * s + k] * a[j * s + k];
            }
            a[i * s + j] = v / d;
        }
    }
    true
}

/// Solves `L Lᵀ x = b` in place for the factor `l` of [`cholesky`].
fn cholesky_solve(l: &[f64], s: usize, b: &mut [f64]) {
    for i in 0..s {
        let mut v = b[i];
        for k in 0..i {
            v -= l[i * s + k] * b[k];
        }
        b[i] = v / l[i * s + i];
    }
    for i in (0..s).rev() {
        let mut v = b[i];
        for k in i + 1..s {
            v -= l[k * s + i] * b[k];
        }
        b[i] = v / l[i * s + i];
    }
}

/// Floating-point operations a layer's solves may take (about a minute on one core);
/// beyond it the layer is left as it is.
const SOLVE_BUDGET: f64 = 1e11;

/// Kept indices along an axis: all of `len` unless the pruning removed some.
fn kept_indices(kept: Option<&Vec<bool>>, len: usize) -> Vec<usize> {
    match kept {
        Some(k) => (0..k.len()).filter(|&i| k[i]).collect(),
        None => (0..len).collect(),
    }
}

/// Accumulates the normal equations of one layer over the batches.
fn accumulate(
    g: &Graph,
    t: &Target,
    xs: &[ArrayD<f32>],
    ys: &[ArrayD<f32>],
    out_idx: &[usize],
    k: usize,
) -> std::result::Result<Normal, String> {
    let node = &g.nodes[t.node];
    let n_out = out_idx.len();
    let mut ne = Normal::new(k, n_out);
    let mut f = vec![0.0f64; k];
    let mut y = vec![0.0f64; n_out];
    for (x, yo) in xs.iter().zip(ys) {
        match t.kind {
            Kind::Gemm { .. } | Kind::MatMul => {
                if x.ndim() < 2 || x.shape()[x.ndim() - 1] != k || yo.ndim() < 1 {
                    return Err(format!("input shape {:?} for {k} features", x.shape()));
                }
                let rows = x.len() / k;
                let ny = yo.shape()[yo.ndim() - 1];
                if yo.len() != rows * ny || out_idx.iter().any(|&c| c >= ny) {
                    return Err(format!(
                        "original output shape {:?} for {rows} rows",
                        yo.shape()
                    ));
                }
                let xv: Vec<f32> = x.iter().copied().collect();
                let yv: Vec<f32> = yo.iter().copied().collect();
                for r in 0..rows {
                    for (fi, &v) in f.iter_mut().zip(&xv[r * k..(r + 1) * k]) {
                        *fi = f64::from(v);
                    }
                    for (yi, &c) in y.iter_mut().zip(out_idx) {
                        *yi = f64::from(yv[r * ny + c]);
                    }
                    ne.add(&f, &y);
                }
            }
            Kind::Conv => {
                let w = f32_init(g, &t.weight).ok_or("weight vanished")?;
                let (c_in, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
                if x.ndim() != 4 || x.shape()[1] != c_in || yo.ndim() != 4 {
                    return Err(format!("Conv input {:?} for {c_in} channels", x.shape()));
                }
                let attrs = ConvAttrs::from_node(node).map_err(|e| e.to_string())?;
                let win = attrs.window(node, &[kh, kw]).map_err(|e| e.to_string())?;
                let (h, wd) = (x.shape()[2], x.shape()[3]);
                let [out, begin, _] = win.resolve(node, &[h, wd]).map_err(|e| e.to_string())?;
                let (oh, ow) = (out[0], out[1]);
                let (sh, sw) = (win.strides()[0], win.strides()[1]);
                let (dh, dw) = (win.dilations()[0], win.dilations()[1]);
                let ys = yo.shape();
                if ys[0] != x.shape()[0]
                    || ys[2] != oh
                    || ys[3] != ow
                    || out_idx.iter().any(|&c| c >= ys[1])
                {
                    return Err(format!("original output shape {ys:?} for output {oh}×{ow}"));
                }
                let xv = x.as_standard_layout();
                let xs = xv.as_slice().ok_or("input not contiguous")?;
                let yv = yo.as_standard_layout();
                let ysl = yv.as_slice().ok_or("output not contiguous")?;
                for b in 0..x.shape()[0] {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for c in 0..c_in {
                                for ky in 0..kh {
                                    let iy = (oy * sh + ky * dh) as isize - begin[0] as isize;
                                    for kx in 0..kw {
                                        let ix = (ox * sw + kx * dw) as isize - begin[1] as isize;
                                        let v = if iy >= 0
                                            && ix >= 0
                                            && (iy as usize) < h
                                            && (ix as usize) < wd
                                        {
                                            f64::from(
                                                xs[((b * c_in + c) * h + iy as usize) * wd
                                                    + ix as usize],
                                            )
                                        } else {
                                            0.0
                                        };
                                        f[(c * kh + ky) * kw + kx] = v;
                                    }
                                }
                            }
                            for (yi, &c) in y.iter_mut().zip(out_idx) {
                                *yi = f64::from(ysl[((b * ys[1] + c) * oh + oy) * ow + ox]);
                            }
                            ne.add(&f, &y);
                        }
                    }
                }
            }
        }
    }
    Ok(ne)
}

/// Refits one layer in `g`; returns the errors before and after and the row count.
fn refit(
    g: &mut Graph,
    t: &Target,
    xs: &[ArrayD<f32>],
    ys: &[ArrayD<f32>],
    out_idx: &[usize],
    rc: &Recalibrate,
) -> std::result::Result<(f64, f64, usize), String> {
    let w = f32_init(g, &t.weight).ok_or("weight vanished")?;
    let view = w.view().permuted_axes(IxDyn(&t.perm));
    let n_out = view.shape()[0];
    let k: usize = view.shape()[1..].iter().product();
    if k > rc.max_features {
        return Err(format!(
            "{k} input features, above the limit of {}",
            rc.max_features
        ));
    }
    if n_out != out_idx.len() {
        return Err(format!(
            "{n_out} output channels, {} in the original",
            out_idx.len()
        ));
    }
    let wc: Vec<f64> = view.iter().map(|&v| f64::from(v)).collect();
    let (scale, bscale) = match t.kind {
        Kind::Gemm { alpha, beta } => (alpha, beta),
        _ => (1.0, 1.0),
    };
    let fit_bias = t.bias.is_some() || t.add_bias;
    let bias: Vec<f64> = match &t.bias {
        Some(b) => f32_init(g, b)
            .ok_or("bias vanished")?
            .iter()
            .map(|&v| f64::from(v) * bscale)
            .collect(),
        None => vec![0.0; n_out],
    };
    let ne = accumulate(g, t, xs, ys, out_idx, k)?;
    if ne.rows == 0 {
        return Err("no calibration rows".into());
    }
    let k1 = k + 1;
    let mean_diag = (0..k).map(|i| ne.g[i * k1 + i]).sum::<f64>() / k.max(1) as f64;
    let damp = rc.dampening * mean_diag;
    let (mut err0, mut err1, mut norm) = (0.0, 0.0, 0.0);
    let mut new_w = wc.clone();
    let mut new_b = bias.clone();
    // Rows whose weights are all non-zero (dense and channel-pruned layers) share one
    // factorisation; any other mask is factored on its own submatrix.
    let masks: Vec<Vec<usize>> = (0..n_out)
        .map(|c| {
            let row = &wc[c * k..(c + 1) * k];
            let mut idx: Vec<usize> = (0..k).filter(|&i| row[i] != 0.0).collect();
            if fit_bias {
                idx.push(k);
            }
            idx
        })
        .collect();
    let full = k + usize::from(fit_bias);
    // Factorisations, then per row two triangular solves and two error evaluations.
    let cost: f64 = masks
        .iter()
        .map(|m| {
            let s = m.len() as f64;
            let factor = if m.len() == full {
                0.0
            } else {
                s.powi(3) / 3.0
            };
            factor + 2.0 * s * s + 2.0 * (k1 as f64).powi(2)
        })
        .sum::<f64>()
        + (full as f64).powi(3) / 3.0;
    if cost > SOLVE_BUDGET {
        return Err(format!(
            "refitting its {n_out} output channels would take about {:.0} GFLOP, above the budget of {:.0}",
            cost / 1e9,
            SOLVE_BUDGET / 1e9
        ));
    }
    let gram = |idx: &[usize]| -> Option<Vec<f64>> {
        let s = idx.len();
        let mut a = vec![0.0; s * s];
        for (p, &i) in idx.iter().enumerate() {
            for (q, &j) in idx.iter().enumerate() {
                a[p * s + q] = ne.g[i * k1 + j];
            }
            if i < k {
                a[p * s + p] += damp;
            }
        }
        (s > 0 && cholesky(&mut a, s)).then_some(a)
    };
    let mut full_factor: Option<Option<Vec<f64>>> = None;
    for c in 0..n_out {
        let mut cur: Vec<f64> = wc[c * k..(c + 1) * k].iter().map(|&v| v * scale).collect();
        cur.push(if fit_bias { bias[c] } else { 0.0 });
        let yy = ne.yy[c];
        // Without a bias term the ones column carries weight 0.
        let e0 = ne.sq_error(c, &cur);
        let idx = &masks[c];
        let s = idx.len();
        let mut rhs = vec![0.0; s];
        for (p, &i) in idx.iter().enumerate() {
            rhs[p] = ne.b[i * ne.n + c];
            if i < k {
                // Ridge towards the pruned weights: a feature the data never shows
                // keeps its weight.
                rhs[p] += damp * cur[i];
            }
        }
        let own;
        let factor = if s == full {
            full_factor.get_or_insert_with(|| gram(idx)).as_deref()
        } else {
            own = gram(idx);
            own.as_deref()
        };
        let mut sol = cur.clone();
        if let Some(l) = factor {
            cholesky_solve(l, s, &mut rhs);
            if rhs.iter().all(|v| v.is_finite()) {
                for (p, &i) in idx.iter().enumerate() {
                    sol[i] = rhs[p];
                }
            }
        }
        let e1 = ne.sq_error(c, &sol);
        // Keep the old weights if the dampened solution is not better on the data.
        let chosen = if e1 <= e0 { sol } else { cur };
        err0 += e0;
        err1 += e1.min(e0);
        norm += yy;
        for i in 0..k {
            new_w[c * k + i] = chosen[i] / scale;
        }
        if fit_bias {
            new_b[c] = chosen[k] / bscale;
        }
    }
    // Write back: weights through the canonical view, the bias (created if missing).
    let w = super::weight_mut(g, &t.weight).ok_or("weight vanished")?;
    let mut view = w.view_mut().permuted_axes(IxDyn(&t.perm));
    for (d, &v) in view.iter_mut().zip(&new_w) {
        *d = v as f32;
    }
    if fit_bias {
        let vals: Vec<f32> = new_b.iter().map(|&v| v as f32).collect();
        match &t.bias {
            Some(b) => {
                let a = super::weight_mut(g, b).ok_or("bias vanished")?;
                for (d, &v) in a.iter_mut().zip(&vals) {
                    *d = v;
                }
            }
            None => {
                let name = fresh_name(g, &format!("{}_recalibrated_bias", t.weight));
                let arr =
                    ArrayD::from_shape_vec(IxDyn(&[n_out]), vals).map_err(|e| e.to_string())?;
                g.initializers.push((name.clone(), Tensor::F32(arr)));
                let node = &mut g.nodes[t.node];
                node.inputs.resize(2, String::new());
                node.inputs.push(name);
            }
        }
    }
    let norm = norm.max(f64::MIN_POSITIVE);
    Ok(((err0 / norm).sqrt(), (err1 / norm).sqrt(), ne.rows))
}

fn fresh_name(g: &Graph, base: &str) -> String {
    let taken = |n: &str| {
        g.initializers.iter().any(|(i, _)| i == n)
            || g.nodes.iter().any(|x| x.outputs.iter().any(|o| o == n))
            || g.inputs.iter().any(|i| i.name == n)
    };
    let mut name = base.to_string();
    let mut i = 1;
    while taken(&name) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// Refits every eligible layer of `pruned` (see the module docs) against `original`.
/// `kept` maps `(weight, axis)` to the indices the pruning kept along that axis.
pub(super) fn run(
    original: &Model,
    pruned: &mut Model,
    kept: &HashMap<(String, usize), Vec<bool>>,
    exclude: &[String],
    rc: &Recalibrate,
) -> Result<Vec<RefitReport>> {
    if rc.batches.is_empty() {
        return Err(Error::Empty("recalibration batches".into()));
    }
    if !(rc.dampening.is_finite() && rc.dampening >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "recalibration dampening {} (must be finite and >= 0)",
            rc.dampening
        )));
    }
    for (i, b) in rc.batches.iter().enumerate() {
        if let Some(p) = b.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "recalibration batch {i} holds a non-finite value at index {p}"
            )));
        }
    }
    let input = single_input(original)?;
    let order = pruned
        .graph
        .topo_order()
        .map_err(model_err("ordering the pruned graph"))?;
    let mut reports = Vec::new();
    for i in order {
        let n = &pruned.graph.nodes[i];
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul")
            || !(n.domain.is_empty() || n.domain == "ai.onnx")
        {
            continue;
        }
        let name = display_name(n);
        let weight = n.inputs.get(1).cloned().unwrap_or_default();
        let mut report = RefitReport {
            node: name.clone(),
            op_type: n.op_type.clone(),
            error_before: None,
            error_after: None,
            rows: 0,
            note: None,
        };
        if exclude
            .iter()
            .any(|e| *e == n.name || *e == n.op_type || *e == name || *e == weight)
        {
            report.note = Some("excluded".into());
            reports.push(report);
            continue;
        }
        let t = match target(&pruned.graph, i) {
            Ok(t) => t,
            Err(why) => {
                report.note = Some(why);
                reports.push(report);
                continue;
            }
        };
        if original
            .graph
            .nodes
            .iter()
            .all(|m| !m.outputs.contains(&t.output))
        {
            report.note = Some(format!(
                "`{}` is not a value of the original model",
                t.output
            ));
            reports.push(report);
            continue;
        }
        let x_name = n.inputs[0].clone();
        let xs = collect(pruned, &input, &x_name, &rc.batches)?;
        let ys = collect(original, &input, &t.output, &rc.batches)?;
        let out_axis = t.perm[0];
        let len = ys.first().map_or(0, |y| {
            if matches!(t.kind, Kind::Conv) {
                y.shape().get(1).copied().unwrap_or(0)
            } else {
                y.shape().last().copied().unwrap_or(0)
            }
        });
        let out_idx = kept_indices(kept.get(&(t.weight.clone(), out_axis)), len);
        match refit(&mut pruned.graph, &t, &xs, &ys, &out_idx, rc) {
            Ok((e0, e1, rows)) => {
                report.error_before = Some(e0);
                report.error_after = Some(e1);
                report.rows = rows;
            }
            Err(why) => report.note = Some(why),
        }
        reports.push(report);
    }
    Ok(reports)
}
