//! onnxruntime's quantized element-wise operators (`com.microsoft` domain), as its
//! QOperator quantizer writes them: `QLinearAdd`, `QLinearMul`, `QLinearSigmoid` and
//! `QLinearLeakyRelu` (tables of [`super::lut`]), `QLinearSoftmax`, `QLinearGlobalAveragePool`, `QLinearConcat`;
//! and `MaxPool` on u8/i8 tensors (exact: the maximum of codes is the code of the
//! maximum).
//!
//! Each computes in f32 what its definition says, `y = saturate(round_half_even(f /
//! y_scale) + y_zp)` of the real-valued result `f`; onnxruntime's fixed-point and
//! lookup-table kernels can differ from it by one step.

use super::input;
use super::lut::{self, Act};
use super::params::{scalar_scale, scalar_zp, scales, zero_points};
use crate::QElem;
use crate::kernels::{
    Isa,
    qadd::{self, AddParams},
};
use edgeml_onnx::ops::attr::{Attrs, describe, invalid, norm_axis, unsupported};
use edgeml_onnx::ops::nn::Window;
use edgeml_onnx::ops::util::broadcast_shapes;
use edgeml_onnx::{
    BuildContext, Error, Node, Operator, Registry, Result, RunMeter, RunStop, Tensor,
};
use ndarray::{ArrayD, Axis, IxDyn, Zip};
use std::sync::atomic::{AtomicBool, Ordering};

/// Registers the operators of this module.
pub(super) fn register(r: &mut Registry) {
    const ALL: i64 = i64::MAX;
    const MS: &str = "com.microsoft";
    r.register(MS, "QLinearAdd", 1, ALL, |c: &BuildContext<'_>| {
        binary(c, Bin::Add)
    });
    r.register(MS, "QLinearMul", 1, ALL, |c: &BuildContext<'_>| {
        binary(c, Bin::Mul)
    });
    r.register(MS, "QLinearSigmoid", 1, ALL, |c: &BuildContext<'_>| {
        lut::build(c, Act::Sigmoid)
    });
    r.register(MS, "QLinearLeakyRelu", 1, ALL, |c: &BuildContext<'_>| {
        let alpha = Attrs::new(c.node).float("alpha", 0.01)?;
        lut::build(c, Act::LeakyRelu(alpha))
    });
    r.register(MS, "QLinearSoftmax", 1, ALL, build_softmax);
    r.register(MS, "QLinearGlobalAveragePool", 1, ALL, build_gap);
    r.register(MS, "QLinearConcat", 1, ALL, build_concat);
    // MaxPool keeps the float operator for float inputs.
    let float = edgeml_onnx::ops::default_registry();
    r.register("", "MaxPool", 1, ALL, move |c: &BuildContext<'_>| {
        let f = float
            .lookup("", "MaxPool", c.opset)
            .ok_or_else(|| unsupported(c.node, "no float MaxPool"))?;
        // 2-D windows run natively on the codes; others through f32.
        let kernel = Attrs::new(c.node).usizes_opt("kernel_shape")?;
        let window = match kernel {
            Some(k) if k.len() == 2 => Some(Window::from_node(c.node, k)?),
            _ => None,
        };
        Ok(Box::new(IntMaxPool {
            node: c.node.clone(),
            inner: f.build(c)?,
            window,
        }) as Box<dyn Operator>)
    });
}

/// Applies the generic `$go` to a u8 or i8 tensor's array, wrapping the result in the
/// same type; any other type is an error naming the node.
macro_rules! on_codes {
    ($node:expr, $t:expr, |$x:ident| $go:expr) => {
        match $t {
            Tensor::U8($x) => Tensor::U8($go),
            Tensor::I8($x) => Tensor::I8($go),
            other => {
                return Err(invalid($node, format!("input of type {:?}", other.dtype())));
            }
        }
    };
}

/// Per-tensor parameters `(scale, zero point)` from inputs `s` and `z`, the zero point
/// typed as `T`.
fn params<T: QElem>(
    node: &Node,
    inputs: &[Option<&Tensor>],
    s: usize,
    z: usize,
) -> Result<(f32, i32)> {
    let sc = scalar_scale(node, &scales(node, inputs, s)?, "scale")?;
    let zp = zero_points(node, inputs, z)?;
    Ok((sc, scalar_zp::<T>(node, zp.as_ref(), "operand")?.to_i32()))
}

/// `saturate(round_half_even(f / s) + z)` as `T`.
#[inline]
pub(super) fn requant<T: QElem>(f: f32, s: f32, z: i32) -> T {
    let (lo, hi) = T::RANGE;
    let v = (f / s).max((lo - z) as f32).min((hi - z) as f32);
    T::from_i32_clamped(super::qdq::round_even_small(v) + z)
}

#[derive(Debug, Clone, Copy)]
enum Bin {
    Add,
    Mul,
}

#[derive(Debug)]
struct Binary {
    node: Node,
    op: Bin,
}

fn binary(ctx: &BuildContext<'_>, op: Bin) -> Result<Box<dyn Operator>> {
    Ok(Box::new(Binary {
        node: ctx.node.clone(),
        op,
    }))
}

impl Binary {
    fn go<T: QElem>(
        &self,
        inputs: &[Option<&Tensor>],
        a: &ArrayD<T>,
        b: &ArrayD<T>,
    ) -> Result<ArrayD<T>> {
        let node = &self.node;
        let (sa, za) = params::<T>(node, inputs, 1, 2)?;
        let (sb, zb) = params::<T>(node, inputs, 4, 5)?;
        let (sy, zy) = params::<T>(node, inputs, 6, 7)?;
        let shape = broadcast_shapes(node, a.shape(), b.shape())?;
        let av = a
            .broadcast(IxDyn(&shape))
            .ok_or_else(|| Error::Internal("broadcast".into()))?;
        let bv = b
            .broadcast(IxDyn(&shape))
            .ok_or_else(|| Error::Internal("broadcast".into()))?;
        let op = self.op;
        match op {
            Bin::Add => {
                // onnxruntime's x86 kernels: the scale ratios and the zero points folded
                // into one constant, `zc − ra·za − rb·zb + ra·a + rb·b`, rounded to even.
                let (ra, rb) = (sa / sy, sb / sy);
                let p = AddParams {
                    ra,
                    rb,
                    c: zy as f32 - ra * za as f32 - rb * zb as f32,
                };
                if let (Some(xa), Some(xb), true) =
                    (a.as_slice(), b.as_slice(), a.shape() == b.shape())
                {
                    let mut y = super::overwritten::<T, _>(IxDyn(&shape))?;
                    // Same shape (residual connections): the vectorized kernel.
                    let out = y
                        .as_slice_mut()
                        .ok_or_else(|| Error::Internal("fresh array not contiguous".into()))?;
                    let isa = Isa::selected();
                    let threads = super::threads();
                    // Split across the plan's threads when each gets at least 64 Ki
                    // elements (a few µs of work).
                    let per = xa.len().div_ceil(threads).max(1 << 16);
                    if threads > 1 && xa.len() > per {
                        use rayon::prelude::*;
                        out.par_chunks_mut(per)
                            .zip(xa.par_chunks(per).zip(xb.par_chunks(per)))
                            .for_each(|(o, (a, b))| qadd::qadd(isa, a, b, o, p));
                    } else {
                        qadd::qadd(isa, xa, xb, out, p);
                    }
                    return Ok(y);
                }
                let mut y = ArrayD::from_elem(IxDyn(&shape), T::from_i32_clamped(0));
                let one = |a: T, b: T| {
                    let mut y = [T::from_i32_clamped(0)];
                    qadd::scalar(&[a], &[b], &mut y, p);
                    y[0]
                };
                Zip::from(&mut y)
                    .and(&av)
                    .and(&bv)
                    .for_each(|y, &a, &b| *y = one(a, b));
                Ok(y)
            }
            Bin::Mul => {
                let mut y = ArrayD::from_elem(IxDyn(&shape), T::from_i32_clamped(0));
                Zip::from(&mut y).and(&av).and(&bv).for_each(|y, &a, &b| {
                    let fa = sa * (a.to_i32() - za) as f32;
                    let fb = sb * (b.to_i32() - zb) as f32;
                    *y = requant::<T>(fa * fb, sy, zy);
                });
                Ok(y)
            }
        }
    }
}

impl Operator for Binary {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let y = match (input(node, inputs, 0)?, input(node, inputs, 3)?) {
            (Tensor::U8(a), Tensor::U8(b)) => Tensor::U8(self.go(inputs, a, b)?),
            (Tensor::I8(a), Tensor::I8(b)) => Tensor::I8(self.go(inputs, a, b)?),
            (a, b) => {
                return Err(invalid(
                    node,
                    format!(
                        "operands of types {:?} and {:?}: both uint8 or both int8",
                        a.dtype(),
                        b.dtype()
                    ),
                ));
            }
        };
        Ok(vec![y])
    }
}

/// `QLinearSoftmax`: x, x_scale, x_zp, y_scale, y_zp; `axis` (default -1) and
/// onnxruntime's `opset` attribute (below 13, the input is coerced to 2-D at `axis`).
#[derive(Debug)]
struct Softmax {
    node: Node,
    axis: i64,
    coerce_2d: bool,
}

fn build_softmax(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let a = Attrs::new(ctx.node);
    Ok(Box::new(Softmax {
        node: ctx.node.clone(),
        axis: a.int("axis", -1)?,
        coerce_2d: a.int("opset", 13)? < 13,
    }))
}

impl Softmax {
    fn go<T: QElem>(&self, inputs: &[Option<&Tensor>], x: &ArrayD<T>) -> Result<ArrayD<T>> {
        let node = &self.node;
        // Softmax is shift-invariant: the input zero point cancels (only checked).
        let (sx, _) = params::<T>(node, inputs, 1, 2)?;
        let (sy, zy) = params::<T>(node, inputs, 3, 4)?;
        let ax = norm_axis(node, self.axis, x.ndim())?;
        let shape = x.shape().to_vec();
        // Rows: the softmax axis (or, coerced, every axis from `ax` on) is innermost.
        let (x2, back) = if self.coerce_2d || ax == x.ndim() - 1 {
            let inner: usize = shape[ax..].iter().product();
            (x.as_standard_layout().into_owned(), (inner, None))
        } else {
            let mut v = x.view();
            v.swap_axes(ax, x.ndim() - 1);
            (v.as_standard_layout().into_owned(), (shape[ax], Some(ax)))
        };
        let (row, swapped) = back;
        let xs = x2.as_slice().unwrap_or(&[]);
        let mut out = Vec::with_capacity(xs.len());
        let mut e = vec![0f32; row];
        for r in xs.chunks(row.max(1)) {
            let m = r.iter().map(|v| v.to_i32()).max().unwrap_or(0);
            let mut sum = 0f32;
            for (ei, v) in e.iter_mut().zip(r) {
                *ei = (sx * (v.to_i32() - m) as f32).exp();
                sum += *ei;
            }
            out.extend(
                e.iter()
                    .take(r.len())
                    .map(|&v| requant::<T>(v / sum, sy, zy)),
            );
        }
        let y = ArrayD::from_shape_vec(IxDyn(x2.shape()), out)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(match swapped {
            None => y
                .into_shape_with_order(IxDyn(&shape))
                .map_err(|e| Error::Internal(e.to_string()))?,
            Some(ax) => {
                let mut y = y;
                let n = y.ndim();
                y.swap_axes(ax, n - 1);
                y.as_standard_layout().into_owned()
            }
        })
    }
}

impl Operator for Softmax {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        Ok(vec![
            on_codes!(node, input(node, inputs, 0)?, |x| self.go(inputs, x)?)
        ])
    }
}

/// `QLinearGlobalAveragePool`: x, x_scale, x_zp, y_scale, y_zp; NCHW (or NHWC with
/// `channels_last = 1`).
#[derive(Debug)]
struct Gap {
    node: Node,
    channels_last: bool,
}

fn build_gap(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    Ok(Box::new(Gap {
        node: ctx.node.clone(),
        channels_last: Attrs::new(ctx.node).int("channels_last", 0)? != 0,
    }))
}

impl Gap {
    fn go<T: QElem>(&self, inputs: &[Option<&Tensor>], x: &ArrayD<T>) -> Result<ArrayD<T>> {
        let node = &self.node;
        if x.ndim() < 3 {
            return Err(invalid(
                node,
                format!("input of rank {} (at least 3)", x.ndim()),
            ));
        }
        let (sx, zx) = params::<T>(node, inputs, 1, 2)?;
        let (sy, zy) = params::<T>(node, inputs, 3, 4)?;
        let c_ax = if self.channels_last { x.ndim() - 1 } else { 1 };
        let mut shape = x.shape().to_vec();
        let spatial: usize = shape
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 0 && *i != c_ax)
            .map(|(_, d)| *d)
            .product();
        let mult = sx / (sy * spatial.max(1) as f32);
        let (n, c) = (shape[0], shape[c_ax]);
        let mut y = ArrayD::from_elem(IxDyn(&[n, c]), T::from_i32_clamped(0));
        match (self.channels_last, x.as_slice(), y.as_slice_mut()) {
            (false, Some(xs), Some(ys)) if spatial > 0 => {
                // Channels first, contiguous: each channel is one run of `spatial` codes;
                // the same sums and rounding as the general loop.
                for (yv, xc) in ys.iter_mut().zip(xs.chunks_exact(spatial)) {
                    let acc: i64 = xc.iter().map(|v| i64::from(v.to_i32())).sum::<i64>()
                        - i64::from(zx) * xc.len() as i64;
                    *yv = requant::<T>(acc as f32 * mult, 1.0, zy);
                }
            }
            _ => {
                for (b, xb) in x.axis_iter(Axis(0)).enumerate() {
                    for (ch, xc) in xb.axis_iter(Axis(c_ax - 1)).enumerate() {
                        let acc: i64 = xc.iter().map(|v| i64::from(v.to_i32() - zx)).sum();
                        y[[b, ch]] = requant::<T>(acc as f32 * mult, 1.0, zy);
                    }
                }
            }
        }
        for (i, d) in shape.iter_mut().enumerate() {
            if i != 0 && i != c_ax {
                *d = 1;
            }
        }
        y.into_shape_with_order(IxDyn(&shape))
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

impl Operator for Gap {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        Ok(vec![
            on_codes!(node, input(node, inputs, 0)?, |x| self.go(inputs, x)?)
        ])
    }
}

/// `QLinearConcat`: y_scale, y_zp, then (x, x_scale, x_zp) per operand; `axis`.
#[derive(Debug)]
struct Concat {
    node: Node,
    axis: i64,
}

fn build_concat(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let n = ctx.node.inputs.len();
    if n < 5 || !(n - 2).is_multiple_of(3) {
        return Err(invalid(
            ctx.node,
            format!(
                "{n} inputs: expected y_scale, y_zero_point and triples of (x, scale, zero point)"
            ),
        ));
    }
    Ok(Box::new(Concat {
        node: ctx.node.clone(),
        axis: Attrs::new(ctx.node).int_req("axis")?,
    }))
}

impl Concat {
    fn go<T: QElem>(
        &self,
        inputs: &[Option<&Tensor>],
        get: impl Fn(&Tensor) -> Option<&ArrayD<T>>,
    ) -> Result<ArrayD<T>> {
        let node = &self.node;
        let (sy, zy) = params::<T>(node, inputs, 0, 1)?;
        let mut parts = Vec::new();
        for i in (2..inputs.len()).step_by(3) {
            let x = get(input(node, inputs, i)?)
                .ok_or_else(|| invalid(node, "operands must share one type"))?;
            let (sx, zx) = params::<T>(node, inputs, i + 1, i + 2)?;
            parts.push(if sx == sy && zx == zy {
                x.clone()
            } else {
                x.mapv(|v| requant::<T>(sx * (v.to_i32() - zx) as f32, sy, zy))
            });
        }
        let rank = parts[0].ndim();
        let ax = norm_axis(node, self.axis, rank)?;
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(ax), &views).map_err(|e| {
            Error::ShapeMismatch(format!(
                "{}: operands do not concatenate: {e}",
                describe(node)
            ))
        })
    }
}

impl Operator for Concat {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        Ok(vec![match input(node, inputs, 2)? {
            Tensor::U8(_) => Tensor::U8(self.go(inputs, |t| match t {
                Tensor::U8(a) => Some(a),
                _ => None,
            })?),
            Tensor::I8(_) => Tensor::I8(self.go(inputs, |t| match t {
                Tensor::I8(a) => Some(a),
                _ => None,
            })?),
            other => return Err(invalid(node, format!("input of type {:?}", other.dtype()))),
        }])
    }
}

/// `MaxPool` that also takes u8/i8 tensors (2-D windows on the codes directly, others
/// exactly through f32), and defers float inputs to the float operator.
#[derive(Debug)]
struct IntMaxPool {
    node: Node,
    inner: Box<dyn Operator>,
    /// The window of a 2-D pool.
    window: Option<Window>,
}

impl IntMaxPool {
    /// The 2-D pool of `x` (`[N, C, H, W]`) on the codes: each output is the largest
    /// code of its window's taps inside the image (every window holds at least one).
    fn pool2d<T: Copy + Ord + Send + Sync>(
        &self,
        w: &Window,
        x: &ArrayD<T>,
        least: T,
    ) -> Result<ArrayD<T>> {
        let node = &self.node;
        let &[n, c, h, wd] = x.shape() else {
            return Err(invalid(
                node,
                format!("{}-D input for a 2-D window", x.ndim()),
            ));
        };
        let [out, begin, end] = w.resolve(node, &[h, wd])?;
        let (oh, ow) = (out[0], out[1]);
        let ([kh, kw], [sh, sw], [dh, dw]) = (
            [w.kernel()[0], w.kernel()[1]],
            [w.strides()[0], w.strides()[1]],
            [w.dilations()[0], w.dilations()[1]],
        );
        let xs = x.as_standard_layout();
        let xs = xs
            .as_slice()
            .ok_or_else(|| Error::Internal("standard layout not contiguous".into()))?;
        let mut y = vec![least; n * c * oh * ow];
        let (pl, pw) = (begin[1], begin[1] + wd + end[1]);
        // A window may be as large as the padded image: the run's deadline and
        // cancellation are polled per block of output rows (false: stopped).
        let stop = RunStop::current();
        let plane = |src: &[T], dst: &mut [T], meter: &mut RunMeter<'_>| {
            // Per output row: the largest of the window's input rows, element-wise, into
            // a row padded with `least`; then each output the largest of its taps there.
            let mut row = vec![least; pw];
            for (oy, yrow) in dst.chunks_mut(ow.max(1)).enumerate() {
                if meter.tick((kh * wd + ow * kw) as u64) {
                    return false;
                }
                let mid = &mut row[pl..pl + wd];
                mid.fill(least);
                for ky in 0..kh {
                    let iy = (oy * sh + ky * dh).checked_sub(begin[0]);
                    if let Some(iy) = iy.filter(|&iy| iy < h) {
                        for (r, &v) in mid.iter_mut().zip(&src[iy * wd..(iy + 1) * wd]) {
                            *r = (*r).max(v);
                        }
                    }
                }
                if (kw, sw, dw) == (3, 2, 1) && row.len() > 2 * yrow.len() {
                    // The common stride-2 3×3 window (ResNet's stem pool): pairs read as
                    // chunks, which the compiler vectorizes, where `step_by` does not.
                    let pairs = row.chunks_exact(2).zip(row[2..].iter().step_by(2));
                    for (o, (p, &r)) in yrow.iter_mut().zip(pairs) {
                        *o = p[0].max(p[1]).max(r);
                    }
                } else {
                    for kx in 0..kw {
                        let taps = row[kx * dw..].iter().step_by(sw);
                        for (o, &v) in yrow.iter_mut().zip(taps) {
                            *o = (*o).max(v);
                        }
                    }
                }
            }
            true
        };
        let (isz, osz) = (h * wd, oh * ow);
        if osz > 0 && isz > 0 {
            let threads = super::threads();
            let finished = if threads > 1 && n * c > 1 && y.len() >= 1 << 16 {
                use rayon::prelude::*;
                let stopped = AtomicBool::new(false);
                y.par_chunks_mut(osz).zip(xs.par_chunks(isz)).for_each_init(
                    || stop.meter(),
                    |meter, (d, s)| {
                        if stopped.load(Ordering::Relaxed) || !plane(s, d, meter) {
                            stopped.store(true, Ordering::Relaxed);
                        }
                    },
                );
                !stopped.into_inner()
            } else {
                let mut meter = stop.meter();
                y.chunks_mut(osz)
                    .zip(xs.chunks(isz))
                    .all(|(d, s)| plane(s, d, &mut meter))
            };
            if !finished {
                return Err(stop.error(&format!("an 8-bit MaxPool window of {:?}", w.kernel())));
            }
        }
        ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), y)
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

impl Operator for IntMaxPool {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input(node, inputs, 0)?;
        let codes = matches!(x, Tensor::U8(_) | Tensor::I8(_));
        if codes && node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(unsupported(node, "the Indices output of an 8-bit MaxPool"));
        }
        if let Some(w) = &self.window {
            match x {
                Tensor::U8(a) => return Ok(vec![Tensor::U8(self.pool2d(w, a, u8::MIN)?)]),
                Tensor::I8(a) => return Ok(vec![Tensor::I8(self.pool2d(w, a, i8::MIN)?)]),
                _ => {}
            }
        }
        let fx = match x {
            Tensor::U8(a) => Tensor::F32(a.mapv(f32::from)),
            Tensor::I8(a) => Tensor::F32(a.mapv(f32::from)),
            _ => return self.inner.run(inputs),
        };
        if node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(unsupported(node, "the Indices output of an 8-bit MaxPool"));
        }
        let mut args = inputs.to_vec();
        args[0] = Some(&fx);
        let mut out = self.inner.run(&args)?;
        let Some(Tensor::F32(y)) = out.pop() else {
            return Err(Error::Internal("float MaxPool gave no f32 output".into()));
        };
        // Every window holds at least one real element, so the maximum is a code.
        Ok(vec![match x {
            Tensor::U8(_) => Tensor::U8(y.mapv(|v| v as u8)),
            _ => Tensor::I8(y.mapv(|v| v as i8)),
        }])
    }
}
