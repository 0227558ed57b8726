//! The bundled digits CNN (`tests/fixtures/digits/cnn.onnx`: `Conv` 1→8 3×3 pad 1,
//! `Relu`, `MaxPool` 2×2 stride 2, `Flatten`, `Gemm` 128→10 with `transB = 1`,
//! `Softmax`) in plain Rust: its weights extracted from the file, a forward pass that
//! returns the logits (the `Gemm` output; the `Softmax` belongs to the loss) and the
//! exact backward pass, and the write-back of trained weights into the ONNX model.
//!
//! The convolution is an im2col matrix product: each output pixel `(b, i, j)` is a row
//! of the 9 input pixels under the kernel (zero outside the image), so the conv output
//! is `cols · Wᵀ + b` with `W` the `[8, 9]` view of the `[8, 1, 3, 3]` weight (same
//! row-major order). Generic over the float type so that the gradient test runs in f64.

use anyhow::{Context, Result, ensure};
use edgeml::onnx::{Model, Tensor};
use ndarray::{Array1, Array2, ArrayView2, ArrayView4, Axis, NdFloat};

/// Image side (inputs are `[N, 1, 8, 8]`).
pub(crate) const SIDE: usize = 8;
/// Conv kernel side.
const KSIDE: usize = 3;
/// Conv output channels.
const CHANNELS: usize = 8;
/// Side after the 2×2 max pool.
const POOLED: usize = SIDE / 2;
/// Features into the `Gemm`: `CHANNELS · POOLED²` in `Flatten` order `(c, i, j)`.
const FEATURES: usize = CHANNELS * POOLED * POOLED;
/// Output classes.
pub(crate) const CLASSES: usize = 10;

/// The names of the four initializers in the ONNX file, in the order of
/// [`Cnn::tensors_mut`].
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// Conv weight `[8, 1, 3, 3]`.
    pub(crate) conv_w: String,
    /// Conv bias `[8]`.
    pub(crate) conv_b: String,
    /// Gemm weight `[10, 128]` (`transB = 1`).
    pub(crate) fc_w: String,
    /// Gemm bias `[10]`.
    pub(crate) fc_b: String,
}

/// The CNN's parameters; also the shape of its gradients and of optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cnn<A> {
    /// Conv weight as `[8, 9]` (the file's `[8, 1, 3, 3]`, row-major).
    pub(crate) conv_w: Array2<A>,
    /// Conv bias.
    pub(crate) conv_b: Array1<A>,
    /// Gemm weight `[10, 128]`, as stored (`transB = 1`).
    pub(crate) fc_w: Array2<A>,
    /// Gemm bias.
    pub(crate) fc_b: Array1<A>,
}

/// What the backward pass needs from the forward pass.
#[derive(Debug)]
pub(crate) struct Cache<A> {
    /// im2col rows `[B·64, 9]`.
    cols: Array2<A>,
    /// Relu output `[B·64, 8]` (row per output pixel, column per channel).
    relu: Array2<A>,
    /// For each pooled feature `(b, f)`, the `relu` row of its maximum.
    argmax: Vec<usize>,
    /// The `Flatten` output `[B, 128]`.
    feat: Array2<A>,
}

fn ints(node: &edgeml::onnx::Node, name: &str) -> Option<Vec<i64>> {
    node.ints_attr(name).map(<[i64]>::to_vec)
}

impl Cnn<f32> {
    /// Extracts the weights of the digits CNN; fails unless the graph is exactly
    /// `Conv(3×3, pad 1) → Relu → MaxPool(2×2, stride 2) → Flatten(1) → Gemm(transB)
    /// → Softmax` with the shapes above.
    pub(crate) fn from_onnx(model: &Model) -> Result<(Self, Names)> {
        let g = &model.graph;
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        ensure!(
            ops == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"],
            "not the digits CNN: {ops:?}"
        );
        let (conv, pool, flat, gemm) = (&g.nodes[0], &g.nodes[2], &g.nodes[3], &g.nodes[4]);
        ensure!(
            ints(conv, "kernel_shape").is_none_or(|k| k == [3, 3])
                && ints(conv, "pads") == Some(vec![1; 4])
                && ints(conv, "strides").is_none_or(|s| s == [1, 1])
                && ints(conv, "dilations").is_none_or(|d| d == [1, 1])
                && conv.int_attr("group", 1) == 1,
            "unsupported Conv attributes {:?}",
            conv.attributes
        );
        ensure!(
            ints(pool, "kernel_shape") == Some(vec![2, 2])
                && ints(pool, "strides") == Some(vec![2, 2])
                && ints(pool, "pads").is_none_or(|p| p.iter().all(|&v| v == 0)),
            "unsupported MaxPool attributes {:?}",
            pool.attributes
        );
        ensure!(flat.int_attr("axis", 1) == 1, "Flatten axis");
        ensure!(
            gemm.int_attr("transA", 0) == 0
                && gemm.int_attr("transB", 0) == 1
                && gemm.float_attr("alpha", 1.0) == 1.0
                && gemm.float_attr("beta", 1.0) == 1.0,
            "unsupported Gemm attributes {:?}",
            gemm.attributes
        );
        let names = Names {
            conv_w: conv.inputs[1].clone(),
            conv_b: conv.inputs.get(2).context("Conv without bias")?.clone(),
            fc_w: gemm.inputs[1].clone(),
            fc_b: gemm.inputs.get(2).context("Gemm without bias")?.clone(),
        };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = g.initializer(name).context(format!("initializer {name}"))?;
            let a = t.as_f32().context(format!("{name} is not f32"))?;
            ensure!(a.shape() == shape, "{name} has shape {:?}", a.shape());
            Ok(a.iter().copied().collect())
        };
        let k2 = KSIDE * KSIDE;
        let cnn = Cnn {
            conv_w: Array2::from_shape_vec(
                (CHANNELS, k2),
                get(&names.conv_w, &[CHANNELS, 1, KSIDE, KSIDE])?,
            )?,
            conv_b: Array1::from(get(&names.conv_b, &[CHANNELS])?),
            fc_w: Array2::from_shape_vec(
                (CLASSES, FEATURES),
                get(&names.fc_w, &[CLASSES, FEATURES])?,
            )?,
            fc_b: Array1::from(get(&names.fc_b, &[CLASSES])?),
        };
        Ok((cnn, names))
    }

    /// `original` with its four initializers replaced by these weights.
    pub(crate) fn to_onnx(&self, original: &Model, names: &Names) -> Result<Model> {
        let mut m = original.clone();
        let g = &mut m.graph;
        let conv_w = self
            .conv_w
            .to_shape((CHANNELS, 1, KSIDE, KSIDE))?
            .to_owned();
        for (name, t) in [
            (&names.conv_w, conv_w.into_dyn()),
            (&names.conv_b, self.conv_b.clone().into_dyn()),
            (&names.fc_w, self.fc_w.clone().into_dyn()),
            (&names.fc_b, self.fc_b.clone().into_dyn()),
        ] {
            ensure!(
                g.set_initializer(name, Tensor::F32(t)).is_some(),
                "{name} was not an initializer"
            );
        }
        Ok(m)
    }
}

impl<A: NdFloat> Cnn<A> {
    /// Zeros of this shape (for gradients and optimizer state).
    pub(crate) fn zeros_like(&self) -> Self {
        Cnn {
            conv_w: Array2::zeros(self.conv_w.raw_dim()),
            conv_b: Array1::zeros(self.conv_b.raw_dim()),
            fc_w: Array2::zeros(self.fc_w.raw_dim()),
            fc_b: Array1::zeros(self.fc_b.raw_dim()),
        }
    }

    /// Every element mapped by `f` (the gradient test's f64 copy).
    #[cfg(test)]
    pub(crate) fn map<B: NdFloat>(&self, f: impl Fn(A) -> B) -> Cnn<B> {
        Cnn {
            conv_w: self.conv_w.mapv(&f),
            conv_b: self.conv_b.mapv(&f),
            fc_w: self.fc_w.mapv(&f),
            fc_b: self.fc_b.mapv(&f),
        }
    }

    /// The four tensors as flat slices: conv weight, conv bias, gemm weight, gemm bias.
    pub(crate) fn tensors_mut(&mut self) -> [&mut [A]; 4] {
        const STD: &str = "parameters are in standard layout";
        [
            self.conv_w.as_slice_mut().expect(STD),
            self.conv_b.as_slice_mut().expect(STD),
            self.fc_w.as_slice_mut().expect(STD),
            self.fc_b.as_slice_mut().expect(STD),
        ]
    }

    /// The logits `[B, 10]` of the images `x` (`[B, 1, 8, 8]`) and the forward cache.
    pub(crate) fn forward(&self, x: ArrayView4<'_, A>) -> (Array2<A>, Cache<A>) {
        let b = x.shape()[0];
        let zero = A::zero();
        // im2col: row (b, i, j), column (ki, kj), zero padding of 1.
        let mut cols = Array2::<A>::zeros((b * SIDE * SIDE, KSIDE * KSIDE));
        for n in 0..b {
            for i in 0..SIDE {
                for j in 0..SIDE {
                    let mut row = cols.row_mut((n * SIDE + i) * SIDE + j);
                    for ki in 0..KSIDE {
                        for kj in 0..KSIDE {
                            let (y, z) = ((i + ki).wrapping_sub(1), (j + kj).wrapping_sub(1));
                            if y < SIDE && z < SIDE {
                                row[ki * KSIDE + kj] = x[[n, 0, y, z]];
                            }
                        }
                    }
                }
            }
        }
        let mut relu = cols.dot(&self.conv_w.t()) + &self.conv_b;
        relu.mapv_inplace(|v| if v > zero { v } else { zero });
        // 2×2 max pool, stride 2; the first maximum in row-major order wins ties.
        let mut feat = Array2::<A>::zeros((b, FEATURES));
        let mut argmax = vec![0usize; b * FEATURES];
        for n in 0..b {
            for c in 0..CHANNELS {
                for pi in 0..POOLED {
                    for pj in 0..POOLED {
                        let mut best = (n * SIDE + 2 * pi) * SIDE + 2 * pj;
                        for (di, dj) in [(0, 1), (1, 0), (1, 1)] {
                            let r = (n * SIDE + 2 * pi + di) * SIDE + 2 * pj + dj;
                            if relu[[r, c]] > relu[[best, c]] {
                                best = r;
                            }
                        }
                        let f = (c * POOLED + pi) * POOLED + pj;
                        feat[[n, f]] = relu[[best, c]];
                        argmax[n * FEATURES + f] = best;
                    }
                }
            }
        }
        let logits = feat.dot(&self.fc_w.t()) + &self.fc_b;
        let cache = Cache {
            cols,
            relu,
            argmax,
            feat,
        };
        (logits, cache)
    }

    /// The logits only.
    pub(crate) fn logits(&self, x: ArrayView4<'_, A>) -> Array2<A> {
        self.forward(x).0
    }

    /// The gradients of a loss with respect to every parameter, given its gradient
    /// `dz` (`[B, 10]`) with respect to the logits of the forward pass that made
    /// `cache`.
    pub(crate) fn backward(&self, cache: &Cache<A>, dz: ArrayView2<'_, A>) -> Self {
        let zero = A::zero();
        let b = dz.nrows();
        let dfeat = dz.dot(&self.fc_w);
        let mut dconv = Array2::<A>::zeros(cache.relu.raw_dim());
        for n in 0..b {
            for f in 0..FEATURES {
                let r = cache.argmax[n * FEATURES + f];
                let c = f / (POOLED * POOLED);
                // The pool windows do not overlap; Relu passes where its output is > 0.
                if cache.relu[[r, c]] > zero {
                    dconv[[r, c]] = dfeat[[n, f]];
                }
            }
        }
        Cnn {
            conv_w: dconv.t().dot(&cache.cols),
            conv_b: dconv.sum_axis(Axis(0)),
            fc_w: dz.t().dot(&cache.feat),
            fc_b: dz.sum_axis(Axis(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeml::onnx::{Plan, PlanOptions};
    use ndarray::{Array4, ArrayD, Ix4};
    use ndarray_npy::read_npy;
    use std::path::{Path, PathBuf};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
    }

    fn run(m: &Model, x: &Array4<f32>) -> Array2<f32> {
        let plan = Plan::new(m, PlanOptions::default()).expect("plan");
        let out = plan
            .run(&[("x", Tensor::F32(x.clone().into_dyn()))])
            .expect("run");
        let p = out[0].1.as_f32().expect("f32").clone();
        p.into_dimensionality().expect("2-D")
    }

    fn softmax(z: &Array2<f32>) -> Array2<f32> {
        let mut p = z.clone();
        for mut row in p.rows_mut() {
            let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            row.mapv_inplace(|v| (v - m).exp());
            let s = row.sum();
            row /= s;
        }
        p
    }

    fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
        assert_eq!(a.shape(), b.shape());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn test_images() -> Array4<f32> {
        let x: ArrayD<f32> = read_npy(fixtures().join("x_test.npy")).expect("x_test");
        x.into_dimensionality::<Ix4>().expect("[N, 1, 8, 8]")
    }

    /// The forward pass equals edgeml-onnx running the original file on the 450 test
    /// images, and after write-back with changed weights it still equals the runtime
    /// (so the layouts of the extraction and the write-back agree with the file's).
    #[test]
    fn forward_matches_the_onnx_runtime_before_and_after_write_back() {
        let model = Model::load(fixtures().join("cnn.onnx")).expect("load");
        let (cnn, names) = Cnn::from_onnx(&model).expect("extract");
        let x = test_images();
        let d = max_abs_diff(&softmax(&cnn.logits(x.view())), &run(&model, &x));
        assert!(d < 1e-5, "dense: {d}");

        let mut changed = cnn.clone();
        for (k, t) in changed.tensors_mut().into_iter().enumerate() {
            for (i, v) in t.iter_mut().enumerate() {
                *v = if (i + k) % 3 == 0 {
                    0.0
                } else {
                    *v * 1.5 - 0.01
                };
            }
        }
        let written = changed.to_onnx(&model, &names).expect("write back");
        let d = max_abs_diff(&softmax(&changed.logits(x.view())), &run(&written, &x));
        assert!(d < 1e-5, "changed: {d}");
        assert_eq!(Cnn::from_onnx(&written).expect("re-extract").0, changed);
    }

    /// Batch-mean cross-entropy of the logits `z` and its gradient, in f64.
    fn cross_entropy(z: &Array2<f64>, y: &[usize]) -> (f64, Array2<f64>) {
        let b = z.nrows() as f64;
        let mut grad = z.clone();
        let mut loss = 0.0;
        for (mut row, &label) in grad.rows_mut().into_iter().zip(y) {
            let m = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
            let lse = m + row.mapv(|v| (v - m).exp()).sum().ln();
            loss += lse - row[label];
            row.mapv_inplace(|v| (v - lse).exp() / b);
            row[label] -= 1.0 / b;
        }
        (loss / b, grad)
    }

    /// Every one of the 1370 parameter gradients equals the central difference of the
    /// f64 loss (step 1e-6) on eight training images.
    #[test]
    fn backward_matches_central_differences_in_f64() {
        let model = Model::load(fixtures().join("cnn.onnx")).expect("load");
        let (cnn, _) = Cnn::from_onnx(&model).expect("extract");
        let cnn = cnn.map(f64::from);
        let x: ArrayD<u8> = read_npy(fixtures().join("x_train_u8.npy")).expect("x_train");
        let y: Array1<i64> = read_npy(fixtures().join("y_train.npy")).expect("y_train");
        let x = x
            .slice_axis(Axis(0), (0..8).into())
            .mapv(|v| f64::from(v) / 16.0)
            .into_dimensionality::<Ix4>()
            .expect("4-D");
        let y: Vec<usize> = y.iter().take(8).map(|&v| v as usize).collect();
        let (z, cache) = cnn.forward(x.view());
        let (_, dz) = cross_entropy(&z, &y);
        let mut grad = cnn.backward(&cache, dz.view());
        let h = 1e-6;
        let mut worst = 0.0f64;
        let mut probe = cnn.clone();
        for (t, g) in grad.tensors_mut().into_iter().enumerate() {
            for (i, &analytic) in g.iter().enumerate() {
                let orig = probe.tensors_mut()[t][i];
                probe.tensors_mut()[t][i] = orig + h;
                let up = cross_entropy(&probe.logits(x.view()), &y).0;
                probe.tensors_mut()[t][i] = orig - h;
                let down = cross_entropy(&probe.logits(x.view()), &y).0;
                probe.tensors_mut()[t][i] = orig;
                let numeric = (up - down) / (2.0 * h);
                let err = (analytic - numeric).abs() / numeric.abs().max(1e-3);
                assert!(
                    err < 1e-5,
                    "tensor {t} element {i}: backward {analytic}, central difference {numeric}"
                );
                worst = worst.max(err);
            }
        }
        // Most gradients are non-zero (the check is not vacuous).
        let nonzero = grad
            .tensors_mut()
            .iter()
            .map(|g| g.iter().filter(|v| v.abs() > 1e-8).count())
            .sum::<usize>();
        assert!(nonzero > 1000, "{nonzero} non-zero gradients");
        eprintln!("worst relative gradient error {worst:.2e}");
    }
}
