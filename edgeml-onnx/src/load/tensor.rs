//! `TensorProto` / `SparseTensorProto` → [`Tensor`] / [`SparseTensor`].

use super::Ctx;
use crate::ir::{SparseTensor, Tensor};
use crate::{Error, Result};
use edgeml_core::{DType, bf16, f16};
use ndarray::{ArrayD, IxDyn};
use onnx_protobuf::{SparseTensorProto, TensorProto, tensor_proto::DataLocation};

/// The element type for an ONNX data-type code, with the right error for each kind of
/// unsupported code.
pub(crate) fn dtype_of(code: i32, what: &str) -> Result<DType> {
    if let Some(t) = DType::from_onnx(code) {
        return Ok(t);
    }
    Err(match code {
        0 => Error::InvalidModel(format!("{what}: data type is UNDEFINED (0)")),
        8 | 12..=15 | 17..=23 => Error::Unsupported(format!(
            "{what}: element type code {code} (string, uint32/64, complex, float8, int4 …)"
        )),
        _ => Error::InvalidModel(format!("{what}: unknown data type code {code}")),
    })
}

/// Validated dims as `usize` and the element count.
pub(crate) fn checked_dims(dims: &[i64], what: &str, ctx: &Ctx<'_>) -> Result<(Vec<usize>, usize)> {
    let mut out = Vec::with_capacity(dims.len().min(64));
    let mut n: u64 = 1;
    // ndarray also requires the product of the non-zero extents to fit in isize, so
    // a zero-sized tensor cannot hide absurd extents (`[0, 2^62, 2^62]`) either.
    let mut nonzero: u64 = 1;
    for &d in dims {
        let u = u64::try_from(d).map_err(|_| {
            Error::InvalidModel(format!("{what}: negative dimension {d} in {dims:?}"))
        })?;
        n = n.checked_mul(u).ok_or_else(|| {
            Error::LimitExceeded(format!("{what}: element count of dims {dims:?} overflows"))
        })?;
        nonzero = nonzero.checked_mul(u.max(1)).ok_or_else(|| {
            Error::LimitExceeded(format!("{what}: extents of dims {dims:?} overflow"))
        })?;
        out.push(usize::try_from(u).map_err(|_| {
            Error::LimitExceeded(format!("{what}: dimension {d} does not fit in memory"))
        })?);
    }
    if n.max(nonzero) > ctx.limits.tensor_elements() {
        return Err(Error::LimitExceeded(format!(
            "{what}: {n} elements (dims {dims:?}) exceed the limit of {} per tensor",
            ctx.limits.tensor_elements()
        )));
    }
    let n = usize::try_from(n)
        .map_err(|_| Error::LimitExceeded(format!("{what}: {n} elements do not fit in memory")))?;
    Ok((out, n))
}

fn le<T, const N: usize>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

fn arr<T>(dims: &[usize], v: Vec<T>, what: &str) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| Error::ShapeMismatch(format!("{what}: {e}")))
}

fn from_raw(dtype: DType, dims: &[usize], raw: &[u8], what: &str) -> Result<Tensor> {
    Ok(match dtype {
        DType::F32 => Tensor::F32(arr(dims, le(raw, f32::from_le_bytes), what)?),
        DType::F64 => Tensor::F64(arr(dims, le(raw, f64::from_le_bytes), what)?),
        DType::F16 => Tensor::F16(arr(
            dims,
            le(raw, |b| f16::from_bits(u16::from_le_bytes(b))),
            what,
        )?),
        DType::BF16 => Tensor::BF16(arr(
            dims,
            le(raw, |b| bf16::from_bits(u16::from_le_bytes(b))),
            what,
        )?),
        DType::I8 => Tensor::I8(arr(dims, le(raw, i8::from_le_bytes), what)?),
        DType::U8 => Tensor::U8(arr(dims, raw.to_vec(), what)?),
        DType::I16 => Tensor::I16(arr(dims, le(raw, i16::from_le_bytes), what)?),
        DType::U16 => Tensor::U16(arr(dims, le(raw, u16::from_le_bytes), what)?),
        DType::I32 => Tensor::I32(arr(dims, le(raw, i32::from_le_bytes), what)?),
        DType::I64 => Tensor::I64(arr(dims, le(raw, i64::from_le_bytes), what)?),
        DType::Bool => Tensor::Bool(arr(dims, raw.iter().map(|&b| b != 0).collect(), what)?),
        other => return Err(Error::Unsupported(format!("{what}: element type {other}"))),
    })
}

/// Values stored in `int32_data`, narrowed as numpy's `astype` does (wrapping), as the
/// ONNX spec stores int8/uint8/int16/uint16/bool and the bit patterns of f16/bf16 there.
fn from_int32(dtype: DType, dims: &[usize], v: &[i32], what: &str) -> Result<Tensor> {
    Ok(match dtype {
        DType::I32 => Tensor::I32(arr(dims, v.to_vec(), what)?),
        DType::I8 => Tensor::I8(arr(dims, v.iter().map(|&x| x as i8).collect(), what)?),
        DType::U8 => Tensor::U8(arr(dims, v.iter().map(|&x| x as u8).collect(), what)?),
        DType::I16 => Tensor::I16(arr(dims, v.iter().map(|&x| x as i16).collect(), what)?),
        DType::U16 => Tensor::U16(arr(dims, v.iter().map(|&x| x as u16).collect(), what)?),
        DType::Bool => Tensor::Bool(arr(dims, v.iter().map(|&x| x != 0).collect(), what)?),
        DType::F16 => Tensor::F16(arr(
            dims,
            v.iter().map(|&x| f16::from_bits(x as u16)).collect(),
            what,
        )?),
        DType::BF16 => Tensor::BF16(arr(
            dims,
            v.iter().map(|&x| bf16::from_bits(x as u16)).collect(),
            what,
        )?),
        other => {
            return Err(Error::InvalidModel(format!(
                "{what}: {other} data stored in int32_data"
            )));
        }
    })
}

fn count_mismatch(what: &str, field: &str, found: usize, dims: &[usize], n: usize) -> Error {
    Error::ShapeMismatch(format!(
        "{what}: dims {dims:?} declare {n} elements but {field} holds {found}"
    ))
}

/// Decodes a dense tensor, checking limits before allocating.
pub(crate) fn decode_tensor(tp: &TensorProto, what: &str, ctx: &mut Ctx<'_>) -> Result<Tensor> {
    let dtype = dtype_of(tp.data_type, what)?;
    if tp.segment.is_some() {
        return Err(Error::Unsupported(format!("{what}: segmented tensors")));
    }
    let (dims, n) = checked_dims(&tp.dims, what, ctx)?;
    let nbytes = (n as u64).saturating_mul(dtype.size_bytes() as u64);
    ctx.add_weight_bytes(nbytes, what)?;
    let typed: [(&str, usize); 5] = [
        ("float_data", tp.float_data.len()),
        ("int32_data", tp.int32_data.len()),
        ("int64_data", tp.int64_data.len()),
        ("double_data", tp.double_data.len()),
        ("uint64_data", tp.uint64_data.len()),
    ];
    let external = tp.data_location.value() == DataLocation::EXTERNAL as i32;
    if tp.data_location.value() > 1 || tp.data_location.value() < 0 {
        return Err(Error::InvalidModel(format!(
            "{what}: unknown data_location {}",
            tp.data_location.value()
        )));
    }
    let sources = typed.iter().filter(|(_, l)| *l > 0).count()
        + usize::from(!tp.raw_data.is_empty())
        + usize::from(external)
        + usize::from(!tp.string_data.is_empty());
    if sources > 1 {
        return Err(Error::InvalidModel(format!(
            "{what}: data stored in more than one field"
        )));
    }
    let expect_bytes = usize::try_from(nbytes).map_err(|_| {
        Error::LimitExceeded(format!("{what}: {nbytes} bytes do not fit in memory"))
    })?;
    if external {
        let raw = crate::external::read_external(tp, what, expect_bytes, ctx)?;
        return from_raw(dtype, &dims, &raw, what);
    }
    if !tp.raw_data.is_empty() || (n == 0 && sources == 0) {
        if tp.raw_data.len() != expect_bytes {
            return Err(Error::ShapeMismatch(format!(
                "{what}: dims {:?} × {} bytes ({dtype}) = {expect_bytes} bytes, but raw_data holds {}",
                dims,
                dtype.size_bytes(),
                tp.raw_data.len()
            )));
        }
        return from_raw(dtype, &dims, &tp.raw_data, what);
    }
    let check = |field: &str, found: usize| {
        if found == n {
            Ok(())
        } else {
            Err(count_mismatch(what, field, found, &dims, n))
        }
    };
    match dtype {
        DType::F32 => {
            check("float_data", tp.float_data.len())?;
            Ok(Tensor::F32(arr(&dims, tp.float_data.clone(), what)?))
        }
        DType::F64 => {
            check("double_data", tp.double_data.len())?;
            Ok(Tensor::F64(arr(&dims, tp.double_data.clone(), what)?))
        }
        DType::I64 => {
            check("int64_data", tp.int64_data.len())?;
            Ok(Tensor::I64(arr(&dims, tp.int64_data.clone(), what)?))
        }
        _ => {
            check("int32_data", tp.int32_data.len())?;
            from_int32(dtype, &dims, &tp.int32_data, what)
        }
    }
}

/// Decodes a sparse tensor (values and indices are dense tensors themselves).
pub(crate) fn decode_sparse(
    sp: &SparseTensorProto,
    what: &str,
    ctx: &mut Ctx<'_>,
) -> Result<SparseTensor> {
    let values = sp
        .values
        .as_ref()
        .ok_or_else(|| Error::InvalidModel(format!("{what}: sparse tensor without values")))?;
    let values = decode_tensor(values, &format!("{what} (values)"), ctx)?;
    let indices = match sp.indices.as_ref() {
        Some(i) => match decode_tensor(i, &format!("{what} (indices)"), ctx)? {
            Tensor::I64(a) => a,
            other => {
                return Err(Error::InvalidModel(format!(
                    "{what}: sparse indices must be int64, got {}",
                    other.dtype()
                )));
            }
        },
        None => ArrayD::from_shape_vec(IxDyn(&[0]), vec![])
            .map_err(|e| Error::InvalidModel(e.to_string()))?,
    };
    let (dims, n) = checked_dims(&sp.dims, what, ctx)?;
    ctx.add_weight_bytes(
        (n as u64).saturating_mul(values.dtype().size_bytes() as u64),
        what,
    )?;
    let s = SparseTensor {
        dims,
        indices,
        values,
    };
    s.linear_indices().map_err(|e| match e {
        Error::InvalidModel(m) => Error::InvalidModel(format!("{what}: {m}")),
        other => other,
    })?;
    Ok(s)
}
