//! Owned, typed, ndarray-backed tensors.

use edgeml_core::{DType, bf16, f16};
use ndarray::ArrayD;

/// An owned tensor of one of the supported element types.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // one variant per element type, named as the type
pub enum Tensor {
    F32(ArrayD<f32>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    F64(ArrayD<f64>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    U16(ArrayD<u16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the inner array of any variant, bound as `$a`.
#[macro_export]
#[doc(hidden)]
macro_rules! tensor_dispatch {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F16($a) => $body,
            $crate::Tensor::BF16($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
        }
    };
}

impl Tensor {
    /// Decodes one serialized ONNX `TensorProto` — the format of the ONNX backend test
    /// data (`test_data_set_0/input_0.pb`) and of `onnx.numpy_helper.from_array(...)
    /// .SerializeToString()` — returning its name (possibly empty) and value.
    ///
    /// The same hardening as model loading applies (default [`crate::Limits`]); external
    /// data is refused because no folder is known.
    ///
    /// # Errors
    /// [`crate::Error::InvalidModel`] for malformed bytes or inconsistent dims/data,
    /// [`crate::Error::LimitExceeded`], [`crate::Error::Unsupported`] element types.
    pub fn from_onnx_bytes(bytes: &[u8]) -> crate::Result<(String, Tensor)> {
        crate::load::tensor_from_bytes(bytes, &crate::LoadOptions::default())
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
            Tensor::F64(_) => DType::F64,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I16(_) => DType::I16,
            Tensor::U16(_) => DType::U16,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        tensor_dispatch!(self, a => a.shape())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        tensor_dispatch!(self, a => a.len())
    }

    /// Whether the tensor has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the data in bytes.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// The `f32` array, if this is an `F32` tensor.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    /// The `i64` array, if this is an `I64` tensor.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Tensor::I64(a) => Some(a),
            _ => None,
        }
    }
}
