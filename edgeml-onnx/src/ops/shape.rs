//! Shape and type operators: `Reshape`, `Flatten`, `Transpose`, `Squeeze`, `Unsqueeze`,
//! `Shape`, `Size`, `Identity`, `Dropout`, `Expand`, `Cast`, `CastLike`, `Constant`,
//! `ConstantOfShape`, `Range`.
//!
//! Every operator returns arrays in standard (row-major) layout.

use super::util::{
    Elem, broadcast_shapes, broadcast_to, cast_to, check_size, input, slim, to_dims, to_i64_vec,
};
use crate::ops::attr::{Attrs, describe, invalid, norm_axis, unsupported};
use crate::{BuildContext, Error, Node, Operator, Registry, Result, Tensor, with_dtype};
use edgeml_core::DType;
use ndarray::{ArrayD, IxDyn};

/// Reshapes any tensor (copying into standard layout if needed).
///
/// # Errors
/// The element counts differ.
pub fn reshape_any(node: &Node, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    if n != t.len() {
        return Err(Error::ShapeMismatch(format!(
            "{}: cannot reshape {:?} ({} elements) to {shape:?}",
            describe(node),
            t.shape(),
            t.len()
        )));
    }
    with_dtype!(t.dtype(), T => {
        let a = T::get(t).ok_or_else(|| invalid(node, "dtype"))?;
        let v = a.as_standard_layout().into_owned();
        let r = v
            .into_shape_with_order(IxDyn(shape))
            .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))))?;
        Ok(T::wrap(r))
    })
}

/// The shape `Reshape` produces (handles `0` and `-1`, `allowzero`).
///
/// # Errors
/// More than one `-1`, a dimension below `-1`, or sizes that do not fit.
pub fn reshape_target(
    node: &Node,
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                Error::ShapeMismatch(format!(
                    "{}: shape {spec:?} copies dimension {i} of {input:?}, which has none",
                    describe(node)
                ))
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "{}: invalid target shape {spec:?}",
                    describe(node)
                )));
            }
        }
    }
    let total: usize = input.iter().product();
    let too_big = || {
        Error::LimitExceeded(format!(
            "{}: target shape {spec:?} is too large",
            describe(node)
        ))
    };
    let rest = out
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_big)?;
    if let Some(i) = infer {
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(Error::ShapeMismatch(format!(
                "{}: cannot reshape {input:?} to {spec:?}",
                describe(node)
            )));
        }
        out[i] = total / rest;
    }
    Ok(out)
}

#[derive(Debug)]
struct Reshape {
    node: Node,
    allowzero: bool,
}

/// [`reshape_any`] of a tensor given by value: free (the array keeps its memory) when it
/// is in standard layout.
fn reshape_owned(node: &Node, t: Tensor, shape: &[usize]) -> Result<Tensor> {
    if shape.iter().product::<usize>() != t.len() {
        return reshape_any(node, &t, shape);
    }
    fn relabel<T: Clone>(node: &Node, a: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
        let a = if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        };
        a.into_shape_with_order(IxDyn(shape))
            .map_err(|e| Error::ShapeMismatch(format!("{}: {e}", describe(node))))
    }
    macro_rules! arms {
        ($($v:ident),*) => {
            match t {
                $(Tensor::$v(a) => Tensor::$v(relabel(node, a, shape)?),)*
            }
        };
    }
    Ok(arms!(F32, F16, BF16, F64, I8, U8, I16, U16, I32, I64, Bool))
}

impl Reshape {
    fn target(&self, t: &Tensor, spec: Option<&Tensor>) -> Result<Vec<usize>> {
        let spec = spec.ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: required input 1 is missing",
                describe(&self.node)
            ))
        })?;
        let spec = to_i64_vec(&self.node, spec)?;
        reshape_target(&self.node, t.shape(), &spec, self.allowzero)
    }
}

impl Operator for Reshape {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let t = input(&self.node, inputs, 0)?;
        let shape = self.target(t, Some(input(&self.node, inputs, 1)?))?;
        Ok(vec![reshape_any(&self.node, t, &shape)?])
    }

    fn consumes_first_input(&self) -> bool {
        true
    }

    fn run_consuming(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let shape = self.target(&first, rest.first().copied().flatten())?;
        Ok(vec![reshape_owned(&self.node, first, &shape)?])
    }
}

/// Flatten, Squeeze, Unsqueeze: a shape computed from the input shape.
#[derive(Debug)]
enum ShapeFn {
    Flatten(i64),
    /// `None` = every dimension of extent 1; attribute axes when `Some`.
    Squeeze(Option<Vec<i64>>),
    Unsqueeze(Option<Vec<i64>>),
}

#[derive(Debug)]
struct Reshaper {
    node: Node,
    f: ShapeFn,
}

impl Operator for Reshaper {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let t = input(&self.node, inputs, 0)?;
        let shape = self.target(t.shape(), inputs.get(1).copied().flatten())?;
        Ok(vec![reshape_any(&self.node, t, &shape)?])
    }

    fn consumes_first_input(&self) -> bool {
        true
    }

    fn run_consuming(&self, first: Tensor, rest: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let shape = self.target(first.shape(), rest.first().copied().flatten())?;
        Ok(vec![reshape_owned(&self.node, first, &shape)?])
    }
}

impl Reshaper {
    /// The output shape for input shape `s` (`axes`: the optional second input).
    fn target(&self, s: &[usize], axes: Option<&Tensor>) -> Result<Vec<usize>> {
        let node = &self.node;
        let axes_in =
            || -> Result<Option<Vec<i64>>> { axes.map(|a| to_i64_vec(node, a)).transpose() };
        let shape = match &self.f {
            ShapeFn::Flatten(axis) => {
                let ax = if *axis == s.len() as i64 {
                    s.len()
                } else {
                    norm_axis(node, *axis, s.len())?
                };
                vec![s[..ax].iter().product(), s[ax..].iter().product()]
            }
            ShapeFn::Squeeze(attr) => {
                let axes = match attr {
                    Some(a) => Some(a.clone()),
                    None => axes_in()?,
                };
                match axes {
                    None => s.iter().copied().filter(|&d| d != 1).collect(),
                    Some(axes) => {
                        let ax: Vec<usize> = axes
                            .iter()
                            .map(|&a| norm_axis(node, a, s.len()))
                            .collect::<Result<_>>()?;
                        for &a in &ax {
                            if s[a] != 1 {
                                return Err(Error::ShapeMismatch(format!(
                                    "{}: cannot squeeze axis {a} of shape {s:?}",
                                    describe(node)
                                )));
                            }
                        }
                        s.iter()
                            .enumerate()
                            .filter(|(i, _)| !ax.contains(i))
                            .map(|(_, &d)| d)
                            .collect()
                    }
                }
            }
            ShapeFn::Unsqueeze(attr) => {
                let axes = match attr {
                    Some(a) => a.clone(),
                    None => axes_in()?.ok_or_else(|| invalid(node, "missing axes"))?,
                };
                let r = s.len() + axes.len();
                let mut ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| norm_axis(node, a, r))
                    .collect::<Result<_>>()?;
                ax.sort_unstable();
                if ax.windows(2).any(|w| w[0] == w[1]) {
                    return Err(invalid(node, format!("repeated axes {axes:?}")));
                }
                let mut it = s.iter();
                (0..r)
                    .map(|i| {
                        if ax.contains(&i) {
                            1
                        } else {
                            it.next().copied().unwrap_or(1)
                        }
                    })
                    .collect()
            }
        };
        Ok(shape)
    }
}

#[derive(Debug)]
struct Transpose {
    node: Node,
    perm: Option<Vec<i64>>,
}

impl Operator for Transpose {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let r = t.shape().len();
        let perm: Vec<usize> = match &self.perm {
            None => (0..r).rev().collect(),
            Some(p) => p
                .iter()
                .map(|&a| norm_axis(node, a, r))
                .collect::<Result<_>>()?,
        };
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
            return Err(invalid(
                node,
                format!("perm {perm:?} is not a permutation of rank {r}"),
            ));
        }
        let out = with_dtype!(t.dtype(), T => {
            let a = T::get(t).ok_or_else(|| invalid(node, "dtype"))?;
            if let Some(b) = super::util::transpose_blocks(a, &perm) {
                return Ok(vec![T::wrap(b)]);
            }
            let v = a.view().permuted_axes(IxDyn(&perm));
            Ok(T::wrap(v.as_standard_layout().into_owned()))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
enum Simple {
    Identity,
    Dropout,
    Shape { start: i64, end: Option<i64> },
    Size,
    Expand,
    Cast(DType),
    CastLike,
    ConstantOfShape(Tensor),
    Range,
}

#[derive(Debug)]
struct SimpleOp {
    node: Node,
    k: Simple,
}

fn clamp_idx(i: i64, r: usize) -> usize {
    let r = r as i64;
    (if i < 0 { i + r } else { i }).clamp(0, r) as usize
}

fn cast_tensor(t: &Tensor, to: DType) -> Result<Tensor> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    if let (Tensor::I32(a), DType::I64) = (t, to) {
        return Ok(Tensor::I64(a.mapv(i64::from)));
    }
    if let (Tensor::I64(a), DType::I32) = (t, to) {
        return Ok(Tensor::I32(a.mapv(|v| v as i32)));
    }
    with_dtype!(to, T => Ok(T::wrap(cast_to::<T>(t))))
}

fn range<T: Elem>(node: &Node, s: T, l: T, d: T) -> Result<ArrayD<T>> {
    let (s64, l64, d64) = (s.to_f64(), l.to_f64(), d.to_f64());
    if d64 == 0.0 || !d64.is_finite() || !s64.is_finite() || !l64.is_finite() {
        return Err(Error::InvalidInput(format!(
            "{}: invalid range start={s64} limit={l64} delta={d64}",
            describe(node)
        )));
    }
    let n = ((l64 - s64) / d64).ceil().max(0.0) as usize;
    check_size(node, &[n])?;
    let v: Vec<T> = (0..n).map(|i| T::from_f64(s64 + i as f64 * d64)).collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0]))))
}

impl Operator for SimpleOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let out = match &self.k {
            Simple::Identity => input(node, inputs, 0)?.clone(),
            Simple::Dropout => {
                let x = input(node, inputs, 0)?.clone();
                if node.outputs.len() > 1 && !node.outputs[1].is_empty() {
                    let mask = Tensor::Bool(ArrayD::from_elem(IxDyn(x.shape()), true));
                    return Ok(vec![x, mask]);
                }
                x
            }
            Simple::Shape { start, end } => {
                let s = input(node, inputs, 0)?.shape();
                let a = clamp_idx(*start, s.len());
                let b = end.map_or(s.len(), |e| clamp_idx(e, s.len()));
                let v: Vec<i64> = s[a..b.max(a)].iter().map(|&d| d as i64).collect();
                Tensor::I64(
                    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| invalid(node, e))?,
                )
            }
            Simple::Size => Tensor::I64(ArrayD::from_elem(
                IxDyn(&[]),
                input(node, inputs, 0)?.len() as i64,
            )),
            Simple::Expand => {
                let t = input(node, inputs, 0)?;
                let spec = to_dims(node, &to_i64_vec(node, input(node, inputs, 1)?)?)?;
                let shape = broadcast_shapes(node, t.shape(), &spec)?;
                check_size(node, &shape)?;
                with_dtype!(t.dtype(), T => {
                    let a = T::get(t).ok_or_else(|| invalid(node, "dtype"))?;
                    Ok(T::wrap(broadcast_to(node, a, &shape)?))
                })?
            }
            Simple::Cast(to) => cast_tensor(input(node, inputs, 0)?, *to)?,
            Simple::CastLike => {
                cast_tensor(input(node, inputs, 0)?, input(node, inputs, 1)?.dtype())?
            }
            Simple::ConstantOfShape(v) => {
                let shape = match inputs.first().copied().flatten() {
                    Some(t) => to_dims(node, &to_i64_vec(node, t)?)?,
                    None => vec![],
                };
                check_size(node, &shape)?;
                with_dtype!(v.dtype(), T => {
                    let x = T::get(v).and_then(|a| a.iter().next().copied()).unwrap_or_default();
                    Ok(T::wrap(ArrayD::from_elem(IxDyn(&shape), x)))
                })?
            }
            Simple::Range => {
                let s = input(node, inputs, 0)?;
                with_dtype!(s.dtype(), T => {
                    let get = |i: usize| -> Result<T> {
                        let t = input(node, inputs, i)?;
                        T::get(t)
                            .and_then(|a| a.iter().next().copied())
                            .ok_or_else(|| invalid(node, format!("input {i} must be a scalar of {:?}", s.dtype())))
                    };
                    Ok(T::wrap(range::<T>(node, get(0)?, get(1)?, get(2)?)?))
                })?
            }
        };
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct Constant {
    value: Tensor,
}

impl Operator for Constant {
    fn run(&self, _inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.value.clone()])
    }
}

fn constant_value(node: &Node) -> Result<Tensor> {
    let a = Attrs::new(node);
    if let Some(t) = a.tensor_opt("value")? {
        return Ok(t.clone());
    }
    if let Some(v) = a.float_opt("value_float")? {
        return Ok(Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = a.int_opt("value_int")? {
        return Ok(Tensor::I64(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = a.floats_opt("value_floats")? {
        return Ok(Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| invalid(node, e))?,
        ));
    }
    if let Some(v) = a.ints_opt("value_ints")? {
        return Ok(Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).map_err(|e| invalid(node, e))?,
        ));
    }
    Err(unsupported(
        node,
        "no supported value attribute (sparse and string constants are not supported)",
    ))
}

fn simple(c: &BuildContext<'_>, k: Simple) -> Result<Box<dyn Operator>> {
    Ok(Box::new(SimpleOp {
        node: slim(c.node),
        k,
    }))
}

/// Registers the shape and type operators into `r`.
pub fn register(r: &mut Registry) {
    const ALL: i64 = i64::MAX;
    r.register("", "Reshape", 5, ALL, build_reshape);
    r.register("", "Flatten", 1, ALL, build_flatten);
    r.register("", "Squeeze", 1, ALL, build_squeeze);
    r.register("", "Unsqueeze", 1, ALL, build_unsqueeze);
    r.register("", "Transpose", 1, ALL, build_transpose);
    r.register("", "Identity", 1, ALL, build_identity);
    r.register("", "Dropout", 1, ALL, build_dropout);
    r.register("", "Shape", 1, ALL, build_shape);
    r.register("", "Size", 1, ALL, build_size);
    r.register("", "Expand", 8, ALL, build_expand);
    r.register("", "Cast", 6, ALL, build_cast);
    r.register("", "CastLike", 15, ALL, build_cast_like);
    r.register("", "ConstantOfShape", 9, ALL, build_constant_of_shape);
    r.register("", "Range", 11, ALL, build_range);
    r.register("", "Constant", 1, ALL, build_constant);
}

fn build_reshape(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let allowzero = Attrs::new(c.node).int("allowzero", 0)? != 0;
    Ok(Box::new(Reshape {
        node: slim(c.node),
        allowzero,
    }))
}

fn build_flatten(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let f = ShapeFn::Flatten(Attrs::new(c.node).int("axis", 1)?);
    Ok(Box::new(Reshaper {
        node: slim(c.node),
        f,
    }))
}

/// `axes` is an attribute below opset 13 and the optional second input from 13 on.
fn build_squeeze(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let axes = if c.opset < 13 {
        Attrs::new(c.node).ints_opt("axes")?
    } else {
        None
    };
    Ok(Box::new(Reshaper {
        node: slim(c.node),
        f: ShapeFn::Squeeze(axes),
    }))
}

/// `axes` is a required attribute below opset 13 and the second input from 13 on.
fn build_unsqueeze(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let axes = if c.opset < 13 {
        Some(
            Attrs::new(c.node)
                .ints_opt("axes")?
                .ok_or_else(|| invalid(c.node, "missing axes"))?,
        )
    } else {
        None
    };
    Ok(Box::new(Reshaper {
        node: slim(c.node),
        f: ShapeFn::Unsqueeze(axes),
    }))
}

fn build_transpose(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let perm = Attrs::new(c.node).ints_opt("perm")?;
    Ok(Box::new(Transpose {
        node: slim(c.node),
        perm,
    }))
}

fn build_identity(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    simple(c, Simple::Identity)
}

fn build_dropout(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    simple(c, Simple::Dropout)
}

fn build_shape(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let a = Attrs::new(c.node);
    simple(
        c,
        Simple::Shape {
            start: a.int("start", 0)?,
            end: a.int_opt("end")?,
        },
    )
}

fn build_size(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    simple(c, Simple::Size)
}

fn build_expand(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    simple(c, Simple::Expand)
}

fn build_cast(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let code = Attrs::new(c.node).int_req("to")?;
    let to = i32::try_from(code)
        .ok()
        .and_then(DType::from_onnx)
        .ok_or_else(|| unsupported(c.node, format!("cast to ONNX type {code}")))?;
    simple(c, Simple::Cast(to))
}

fn build_cast_like(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    simple(c, Simple::CastLike)
}

/// The `value` attribute (one element; a float 0 when absent) fills the output.
fn build_constant_of_shape(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let v = Attrs::new(c.node)
        .tensor_opt("value")?
        .cloned()
        .unwrap_or_else(|| Tensor::F32(ArrayD::from_elem(IxDyn(&[1]), 0.0)));
    if v.len() != 1 {
        return Err(invalid(c.node, "value must have exactly one element"));
    }
    simple(c, Simple::ConstantOfShape(v))
}

fn build_range(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    simple(c, Simple::Range)
}

fn build_constant(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(Constant {
        value: constant_value(c.node)?,
    }))
}

#[cfg(test)]
mod tests;
