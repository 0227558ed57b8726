//! Sparse tensors in ONNX's COO layout.

use super::Tensor;
use crate::{Error, Result};
use ndarray::{Array1, ArrayD, IxDyn};

/// A sparse tensor in COO form, as ONNX's `SparseTensorProto`.
///
/// `indices` is either 1-D (`[nnz]`, linear indices into the dense tensor) or 2-D
/// (`[nnz, rank]`, one coordinate tuple per value); `values` is 1-D with `nnz` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseTensor {
    /// Shape of the dense tensor.
    pub dims: Vec<usize>,
    /// The indices, `[nnz]` or `[nnz, rank]`.
    pub indices: ArrayD<i64>,
    /// The non-zero values, `[nnz]`.
    pub values: Tensor,
}

/// Fills a zero tensor of `dims` with `values` at `lin` positions (validated indices).
fn scatter<T: Clone + Default>(
    dims: &[usize],
    lin: &[usize],
    vals: &ArrayD<T>,
) -> Result<ArrayD<T>> {
    let n: usize = dims.iter().product();
    let mut out = vec![T::default(); n];
    for (&i, v) in lin.iter().zip(vals.iter()) {
        if let Some(slot) = out.get_mut(i) {
            *slot = v.clone();
        }
    }
    ArrayD::from_shape_vec(IxDyn(dims), out)
        .map_err(|e| Error::InvalidModel(format!("sparse tensor dims {dims:?}: {e}")))
}

/// The non-zero elements of `a` (`v != T::default()`) and their linear indices.
fn gather<T: Clone + Default + PartialEq>(a: &ArrayD<T>) -> (Vec<i64>, ArrayD<T>) {
    let zero = T::default();
    let (mut idx, mut vals) = (Vec::new(), Vec::new());
    for (i, v) in a.iter().enumerate() {
        if *v != zero {
            // i < a.len() <= isize::MAX, so it fits an i64.
            idx.push(i as i64);
            vals.push(v.clone());
        }
    }
    (idx, Array1::from(vals).into_dyn())
}

impl SparseTensor {
    /// The COO form of a dense tensor: its non-zero elements in row-major order with 1-D
    /// linear indices (`[nnz]`), as ONNX's `SparseTensorProto` allows. Zeros of either
    /// sign are dropped, so a `-0.0` comes back as `0.0` from
    /// [`SparseTensor::to_dense`]; every other value comes back bit for bit.
    pub fn from_dense(t: &Tensor) -> SparseTensor {
        macro_rules! coo {
            ($($v:ident),*) => {
                match t {
                    $(Tensor::$v(a) => {
                        let (i, v) = gather(a);
                        (i, Tensor::$v(v))
                    })*
                }
            };
        }
        let (idx, values) = coo!(F32, F16, BF16, F64, I8, U8, I16, U16, I32, I64, Bool);
        SparseTensor {
            dims: t.shape().to_vec(),
            indices: Array1::from(idx).into_dyn(),
            values,
        }
    }

    /// Bytes of the COO payload: `nnz` values plus `nnz` 8-byte indices per index
    /// column (what [`SparseTensor::from_dense`] writes takes one column).
    pub fn size_bytes(&self) -> usize {
        self.values.size_bytes() + self.indices.len() * 8
    }

    /// Number of elements of the dense tensor, or `None` on overflow.
    pub fn dense_len(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// The linear index of every stored value, validated against `dims`.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] when the indices have the wrong shape or a coordinate is
    /// out of range or negative.
    pub fn linear_indices(&self) -> Result<Vec<usize>> {
        let bad = |m: String| Error::InvalidModel(format!("sparse tensor: {m}"));
        let n = self
            .dense_len()
            .ok_or_else(|| bad(format!("dims {:?} overflow", self.dims)))?;
        let nnz = self.values.len();
        if self.values.shape().len() != 1 {
            return Err(bad(format!(
                "values must be 1-D, got {:?}",
                self.values.shape()
            )));
        }
        let idx = self.indices.shape();
        let to_usize = |v: i64, bound: usize| -> Result<usize> {
            usize::try_from(v)
                .ok()
                .filter(|&u| u < bound)
                .ok_or_else(|| bad(format!("index {v} out of range 0..{bound}")))
        };
        let mut out = Vec::with_capacity(nnz);
        match idx {
            [k] if *k == nnz => {
                for &v in self.indices.iter() {
                    out.push(to_usize(v, n)?);
                }
            }
            [k, r] if *k == nnz && *r == self.dims.len() => {
                let flat: Vec<i64> = self.indices.iter().copied().collect();
                let r = *r;
                for i in 0..nnz {
                    let mut lin = 0usize;
                    for (&c, &d) in flat[i * r..(i + 1) * r].iter().zip(&self.dims) {
                        lin = lin * d + to_usize(c, d)?;
                    }
                    out.push(lin);
                }
            }
            _ => {
                return Err(bad(format!(
                    "indices shape {idx:?} does not fit {nnz} values of rank {}",
                    self.dims.len()
                )));
            }
        }
        Ok(out)
    }

    /// The dense tensor (zeros where no value is stored; a repeated index keeps the
    /// last value).
    ///
    /// # Errors
    /// As [`SparseTensor::linear_indices`].
    pub fn to_dense(&self) -> Result<Tensor> {
        let lin = self.linear_indices()?;
        let d = &self.dims;
        Ok(match &self.values {
            Tensor::F32(a) => Tensor::F32(scatter(d, &lin, a)?),
            Tensor::F16(a) => Tensor::F16(scatter(d, &lin, a)?),
            Tensor::BF16(a) => Tensor::BF16(scatter(d, &lin, a)?),
            Tensor::F64(a) => Tensor::F64(scatter(d, &lin, a)?),
            Tensor::I8(a) => Tensor::I8(scatter(d, &lin, a)?),
            Tensor::U8(a) => Tensor::U8(scatter(d, &lin, a)?),
            Tensor::I16(a) => Tensor::I16(scatter(d, &lin, a)?),
            Tensor::U16(a) => Tensor::U16(scatter(d, &lin, a)?),
            Tensor::I32(a) => Tensor::I32(scatter(d, &lin, a)?),
            Tensor::I64(a) => Tensor::I64(scatter(d, &lin, a)?),
            Tensor::Bool(a) => Tensor::Bool(scatter(d, &lin, a)?),
        })
    }
}
