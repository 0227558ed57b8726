//! A small dense student: `Linear → ReLU → … → Linear` with optional input
//! standardisation, its forward pass and exact backward pass.

use edgeml_core::{DistillLoss, Targets};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{Error, Result, check_finite};
use crate::rng::SplitMix64;

/// Rows per work item of the forward and backward passes. Gradients are summed per
/// chunk, then over chunks in order, so results do not depend on the thread count.
const CHUNK: usize = 32;
/// Multiply-adds per pass below which the pass stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 17;

/// Per-feature standardisation `(x − mean) / std`, applied before the first layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardization {
    /// Per-feature means.
    pub mean: Vec<f32>,
    /// Per-feature standard deviations (population); constant features get 1, as in
    /// scikit-learn's `StandardScaler`.
    pub std: Vec<f32>,
}

/// A multi-layer perceptron `Linear → ReLU → … → Linear` producing logits.
///
/// Layer `l` maps `sizes[l]` features to `sizes[l + 1]` as `y = W·x + b` with `W`
/// stored row-major `[out, in]` (ONNX `Gemm` with `transB = 1`, PyTorch's `nn.Linear`);
/// all parameters live in one flat vector, layer by layer, each `W` then `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    sizes: Vec<usize>,
    input_shape: Vec<usize>,
    params: Vec<f32>,
    standardization: Option<Standardization>,
}

/// The activations of one chunk: the (standardised) input, each hidden layer's output
/// after ReLU, and the logits.
struct Acts {
    layers: Vec<Vec<f32>>,
}

impl Mlp {
    /// A new network for samples of shape `input_shape` (flattened; e.g. `[1, 8, 8]`),
    /// hidden layers of the given widths and `classes` outputs, initialised as
    /// PyTorch's `nn.Linear` does (`W` and `b` uniform in `±1/√fan_in`) from `seed`.
    ///
    /// # Errors
    /// An empty or zero-sized input shape, a zero hidden width, fewer than 2 classes.
    pub fn new(input_shape: &[usize], hidden: &[usize], classes: usize, seed: u64) -> Result<Mlp> {
        let inputs: usize = input_shape.iter().product();
        if input_shape.is_empty() || inputs == 0 {
            return Err(Error::InvalidArgument(format!(
                "input shape {input_shape:?} holds no features"
            )));
        }
        if let Some(i) = hidden.iter().position(|&h| h == 0) {
            return Err(Error::InvalidArgument(format!(
                "hidden layer {i} has width 0"
            )));
        }
        if classes < 2 {
            return Err(Error::InvalidArgument(format!(
                "{classes} classes: a classifier needs at least 2"
            )));
        }
        let mut sizes = vec![inputs];
        sizes.extend_from_slice(hidden);
        sizes.push(classes);
        let mut rng = SplitMix64::new(seed);
        let mut params = Vec::new();
        for w in sizes.windows(2) {
            let bound = 1.0 / (w[0] as f64).sqrt();
            for _ in 0..(w[0] + 1) * w[1] {
                params.push(((2.0 * rng.next_f64() - 1.0) * bound) as f32);
            }
        }
        Ok(Mlp {
            sizes,
            input_shape: input_shape.to_vec(),
            params,
            standardization: None,
        })
    }

    /// Layer widths: inputs, each hidden layer, classes.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The shape of one sample, as given to [`Mlp::new`].
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Features per sample (the flattened input width).
    pub fn inputs(&self) -> usize {
        self.sizes[0]
    }

    /// Output width.
    pub fn classes(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// The number of trainable parameters (weights and biases).
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// The number of parameters that are not zero (after pruning, the parameters a
    /// sparse format has to store).
    pub fn num_nonzero_params(&self) -> usize {
        self.params.iter().filter(|&&p| p != 0.0).count()
    }

    /// All parameters, layer by layer (`W` row-major `[out, in]`, then `b`).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// All parameters, mutable (same layout as [`Mlp::params`]).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Layer `l`'s weights `[out, in]` and bias `[out]`.
    ///
    /// # Panics
    /// If `l` is not below the number of layers (`sizes().len() − 1`).
    pub fn layer(&self, l: usize) -> (&[f32], &[f32]) {
        let (off, n_in, n_out) = self.layer_at(l);
        let w = &self.params[off..off + n_in * n_out];
        (
            w,
            &self.params[off + n_in * n_out..off + (n_in + 1) * n_out],
        )
    }

    /// The input standardisation, if any.
    pub fn standardization(&self) -> Option<&Standardization> {
        self.standardization.as_ref()
    }

    /// Sets the input standardisation from the mean and population standard deviation
    /// of each feature of `x` (`[samples, inputs]`); features whose deviation is below
    /// 1e-6 get a deviation of 1.
    ///
    /// # Errors
    /// `x` has no rows, the wrong width, or non-finite values.
    pub fn fit_standardization(&mut self, x: ArrayView2<'_, f32>) -> Result<()> {
        self.check_x(x)?;
        if x.nrows() == 0 {
            return Err(Error::InvalidArgument(
                "standardisation needs at least one sample".into(),
            ));
        }
        let n = x.nrows() as f64;
        let mut mean = vec![0.0f64; self.inputs()];
        let mut var = vec![0.0f64; self.inputs()];
        for row in x.rows() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        for row in x.rows() {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (f64::from(v) - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|s| {
                let d = (s / n).sqrt();
                if d < 1e-6 { 1.0 } else { d as f32 }
            })
            .collect();
        self.standardization = Some(Standardization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        });
        Ok(())
    }

    /// Sets or clears the input standardisation.
    ///
    /// # Errors
    /// Lengths other than [`Mlp::inputs`], non-finite values, deviations that are not
    /// positive.
    pub fn set_standardization(&mut self, s: Option<Standardization>) -> Result<()> {
        if let Some(s) = &s {
            crate::error::check_len("mean", s.mean.len(), self.inputs())?;
            crate::error::check_len("std", s.std.len(), self.inputs())?;
            check_finite(&s.mean, "mean")?;
            check_finite(&s.std, "std")?;
            if let Some(i) = s.std.iter().position(|&d| d <= 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "std {} of feature {i} is not positive",
                    s.std[i]
                )));
            }
        }
        self.standardization = s;
        Ok(())
    }

    /// The logits for `x` (`[samples, inputs]`), `[samples, classes]`.
    ///
    /// # Errors
    /// `x` has the wrong width or non-finite values.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.check_x(x)?;
        let x = x.as_standard_layout();
        let flat = x.as_slice().unwrap_or(&[]);
        let k = self.classes();
        let rows = x.nrows();
        let mut out = vec![0.0f32; rows * k];
        let run = |(xc, oc): (&[f32], &mut [f32])| {
            let acts = self.forward(xc);
            oc.copy_from_slice(&acts.layers[acts.layers.len() - 1]);
        };
        if self.parallel(rows) {
            flat.par_chunks(CHUNK * self.inputs())
                .zip(out.par_chunks_mut(CHUNK * k))
                .for_each(run);
        } else {
            flat.chunks(CHUNK * self.inputs())
                .zip(out.chunks_mut(CHUNK * k))
                .for_each(run);
        }
        Array2::from_shape_vec((rows, k), out)
            .map_err(|e| Error::InvalidArgument(format!("logits shape: {e}")))
    }

    /// The loss of the batch `x` (`[batch, inputs]`) and its exact gradient with
    /// respect to every parameter, written to `grad` (length [`Mlp::num_params`]):
    /// the loss's gradient with respect to the logits, back-propagated.
    ///
    /// # Errors
    /// Wrong widths or lengths, non-finite inputs, and whatever `loss` refuses
    /// (wrapped in [`Error::Loss`]).
    pub fn loss_and_grad<L: DistillLoss + ?Sized>(
        &self,
        x: ArrayView2<'_, f32>,
        loss: &L,
        targets: &Targets<'_>,
        grad: &mut [f32],
    ) -> Result<f64> {
        self.check_x(x)?;
        crate::error::check_len("grad", grad.len(), self.num_params())?;
        let x = x.as_standard_layout();
        let flat = x.as_slice().unwrap_or(&[]);
        let rows = x.nrows();
        let k = self.classes();
        let d = self.inputs();
        let par = self.parallel(rows);
        let acts: Vec<Acts> = if par {
            flat.par_chunks(CHUNK * d)
                .map(|c| self.forward(c))
                .collect()
        } else {
            flat.chunks(CHUNK * d).map(|c| self.forward(c)).collect()
        };
        let logits: Vec<f32> = acts
            .iter()
            .flat_map(|a| a.layers[a.layers.len() - 1].iter().copied())
            .collect();
        let mut dlogits = vec![0.0f32; rows * k];
        let value = loss.loss_and_grad(&logits, rows, k, targets, &mut dlogits)?;
        let backward = |(a, dl): (&Acts, &[f32])| self.backward(a, dl);
        let parts: Vec<Vec<f32>> = if par {
            acts.par_iter()
                .zip(dlogits.par_chunks(CHUNK * k))
                .map(backward)
                .collect()
        } else {
            acts.iter()
                .zip(dlogits.chunks(CHUNK * k))
                .map(backward)
                .collect()
        };
        grad.fill(0.0);
        for p in parts {
            grad.iter_mut().zip(&p).for_each(|(g, v)| *g += v);
        }
        Ok(value)
    }

    fn parallel(&self, rows: usize) -> bool {
        rows > CHUNK && rows * self.num_params() >= PARALLEL_MIN
    }

    fn check_x(&self, x: ArrayView2<'_, f32>) -> Result<()> {
        if x.ncols() != self.inputs() {
            return Err(Error::LengthMismatch {
                what: "input features per sample",
                expected: self.inputs(),
                got: x.ncols(),
            });
        }
        for (r, row) in x.rows().into_iter().enumerate() {
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: "input",
                    index: r * x.ncols() + j,
                    value: row[j],
                });
            }
        }
        Ok(())
    }

    /// (parameter offset, fan-in, fan-out) of layer `l`.
    pub(crate) fn layer_at(&self, l: usize) -> (usize, usize, usize) {
        let off = self.sizes[..l]
            .iter()
            .zip(&self.sizes[1..=l])
            .map(|(i, o)| (i + 1) * o)
            .sum();
        (off, self.sizes[l], self.sizes[l + 1])
    }

    /// The forward pass of a chunk of rows (row-major, `inputs` wide).
    fn forward(&self, x: &[f32]) -> Acts {
        let d = self.inputs();
        let rows = x.len() / d;
        let mut a0 = x.to_vec();
        if let Some(s) = &self.standardization {
            for row in a0.chunks_exact_mut(d) {
                for ((v, m), sd) in row.iter_mut().zip(&s.mean).zip(&s.std) {
                    *v = (*v - m) / sd;
                }
            }
        }
        let n_layers = self.sizes.len() - 1;
        let mut layers = vec![a0];
        for l in 0..n_layers {
            let (w, b) = self.layer(l);
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let input = &layers[l];
            let mut out = vec![0.0f32; rows * n_out];
            for (xr, yr) in input.chunks_exact(n_in).zip(out.chunks_exact_mut(n_out)) {
                for ((y, wr), bo) in yr.iter_mut().zip(w.chunks_exact(n_in)).zip(b) {
                    let s = dot(wr, xr) + bo;
                    *y = if l + 1 < n_layers { s.max(0.0) } else { s };
                }
            }
            layers.push(out);
        }
        Acts { layers }
    }

    /// The parameter gradient of one chunk given the gradient of the logits.
    fn backward(&self, acts: &Acts, dlogits: &[f32]) -> Vec<f32> {
        let mut g = vec![0.0f32; self.num_params()];
        let mut delta = dlogits.to_vec();
        for l in (0..self.sizes.len() - 1).rev() {
            let (off, n_in, n_out) = self.layer_at(l);
            let input = &acts.layers[l];
            let (gw, gb) = g[off..off + (n_in + 1) * n_out].split_at_mut(n_in * n_out);
            for (dr, xr) in delta.chunks_exact(n_out).zip(input.chunks_exact(n_in)) {
                for ((gwr, gbo), &dv) in gw.chunks_exact_mut(n_in).zip(gb.iter_mut()).zip(dr) {
                    *gbo += dv;
                    gwr.iter_mut().zip(xr).for_each(|(gv, &xv)| *gv += dv * xv);
                }
            }
            if l == 0 {
                break;
            }
            let (w, _) = self.layer(l);
            let mut prev = vec![0.0f32; input.len()];
            for ((pr, dr), xr) in prev
                .chunks_exact_mut(n_in)
                .zip(delta.chunks_exact(n_out))
                .zip(input.chunks_exact(n_in))
            {
                for (wr, &dv) in w.chunks_exact(n_in).zip(dr) {
                    pr.iter_mut().zip(wr).for_each(|(p, &wv)| *p += dv * wv);
                }
                // ReLU: the input of layer l is the output of a ReLU
                pr.iter_mut().zip(xr).for_each(|(p, &xv)| {
                    if xv <= 0.0 {
                        *p = 0.0;
                    }
                });
            }
            delta = prev;
        }
        g
    }
}

/// `Σ a_i·b_i` in four interleaved partial sums (vectorizes without reassociation).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
