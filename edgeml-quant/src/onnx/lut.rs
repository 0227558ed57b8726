//! Non-linear activations on quantized tensors through 256-entry lookup tables: the
//! `com.microsoft` `QLinearSigmoid` and `QLinearLeakyRelu`, and edgeml's own
//! `com.edgeml` `QLinearLookup`, which [`super::fuse_qdq`] writes for
//! `DequantizeLinear → activation → QuantizeLinear` groups.
//!
//! `QLinearLookup` takes `x, x_scale, x_zero_point, y_scale, y_zero_point` (per-tensor;
//! the zero points give the input and output types, which may differ, u8 or i8) and the
//! string attribute `activation`: `Sigmoid`, `HardSigmoid` (`alpha`, `beta`),
//! `HardSwish`, `Tanh`, `Gelu` (`approximate` = `none` or `tanh`), `LeakyRelu`
//! (`alpha`), `Relu` or `Clip` (`min`, `max`), with the float attributes of the
//! activation it replaces and the same defaults.
//!
//! Numerics: entry `q` of the table is
//! `saturate(round_half_even(f(x_scale · (q − x_zp)) / y_scale) + y_zp)`, where the
//! dequantized value and the division are `f32` (as `DequantizeLinear` and
//! `QuantizeLinear` compute them) and `f` is evaluated in `f64` and rounded once to
//! `f32`, so every entry is the quantized value of the float function (`erf` is ours,
//! within 1e-13 relative where it matters).
//! onnxruntime evaluates `f` with its own `f32` approximations (MLAS logistic, tanh and
//! erf) and can land one step away where `f / y_scale` is within an ulp of a rounding
//! tie. The table is built once when the plan is built if the scales and zero points
//! are constant (else at each run).

use super::params::{scales_of, zero_points_of, zp_as};
use super::qelementwise::requant;
use crate::QElem;
use edgeml_core::DType;
use edgeml_onnx::ops::attr::{Attrs, invalid};
use edgeml_onnx::ops::util::input;
use edgeml_onnx::{BuildContext, Node, Operator, Result, Tensor};
use ndarray::ArrayD;

/// The float function a table stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Act {
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    /// `approximate = "tanh"` when `tanh`.
    Gelu {
        tanh: bool,
    },
    LeakyRelu(f32),
    Relu,
    Clip {
        min: f32,
        max: f32,
    },
}

impl Act {
    /// The activation named by `op` with the float attributes of `node`.
    pub(super) fn parse(node: &Node, op: &str) -> Result<Act> {
        let a = Attrs::new(node);
        Ok(match op {
            "Sigmoid" => Act::Sigmoid,
            "HardSigmoid" => Act::HardSigmoid {
                alpha: a.float("alpha", 0.2)?,
                beta: a.float("beta", 0.5)?,
            },
            "HardSwish" => Act::HardSwish,
            "Tanh" => Act::Tanh,
            "Gelu" => match a.string("approximate", "none")?.as_str() {
                "none" => Act::Gelu { tanh: false },
                "tanh" => Act::Gelu { tanh: true },
                other => return Err(invalid(node, format!("unknown approximate={other:?}"))),
            },
            "LeakyRelu" => Act::LeakyRelu(a.float("alpha", 0.01)?),
            "Relu" => Act::Relu,
            "Clip" => Act::Clip {
                min: a.float("min", f32::NEG_INFINITY)?,
                max: a.float("max", f32::INFINITY)?,
            },
            other => return Err(invalid(node, format!("unknown activation {other:?}"))),
        })
    }

    /// `f(x)` evaluated in `f64`, rounded to `f32`.
    fn eval(self, x: f32) -> f32 {
        let v = f64::from(x);
        let y = match self {
            Act::Sigmoid => {
                // Both forms stay accurate (no 1 − tiny cancellation) on their side.
                if v >= 0.0 {
                    1.0 / (1.0 + (-v).exp())
                } else {
                    let e = v.exp();
                    e / (1.0 + e)
                }
            }
            Act::HardSigmoid { alpha, beta } => {
                (f64::from(alpha) * v + f64::from(beta)).clamp(0.0, 1.0)
            }
            Act::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
            Act::Tanh => v.tanh(),
            Act::Gelu { tanh: false } => 0.5 * v * erfc(-v * std::f64::consts::FRAC_1_SQRT_2),
            Act::Gelu { tanh: true } => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * v * (1.0 + (c * (v + 0.044_715 * v * v * v)).tanh())
            }
            Act::LeakyRelu(a) => {
                if v >= 0.0 {
                    v
                } else {
                    f64::from(a) * v
                }
            }
            Act::Relu => v.max(0.0),
            Act::Clip { min, max } => v.max(f64::from(min)).min(f64::from(max)),
        };
        y as f32
    }
}

/// `erfc(z)` within 1e-13 relative for `|z| ≤ 6` (against the C library's `erfc` on a
/// 0.01 grid; beyond, where `erfc < 3e-17`, within 1e-9 relative): for `z ≥ 0.5` through
/// Lentz's continued fraction, below that as `1 − erf(z)`;
/// `erf` from its everywhere-positive series `2/√π · e^(−z²) · Σ 2ⁿ z^(2n+1) / (2n+1)!!`.
pub(super) fn erfc(z: f64) -> f64 {
    if z.is_nan() {
        return z;
    }
    if z < 0.5 {
        return 1.0 - erf_series(z);
    }
    if z > 27.0 {
        return 0.0;
    }
    // Lentz's continued fraction: erfc(z) = e^(−z²)/√π · 1/(z + 1/2/(z + 1/(z + 3/2/(z + …)))).
    let tiny = 1e-300;
    let mut f = z;
    let mut c = z;
    let mut d = 0.0;
    for k in 1..500 {
        let a = f64::from(k) * 0.5;
        d = z + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = z + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-z * z).exp() / (f * std::f64::consts::PI.sqrt())
}

/// `erf(z)` from the positive series; exact to a few ulp for `|z| ≤ 6`, ±1 beyond.
fn erf_series(z: f64) -> f64 {
    if z.abs() > 6.0 {
        return z.signum();
    }
    let z2 = 2.0 * z * z;
    let mut term = z;
    let mut sum = z;
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= z2 / (2.0 * n + 1.0);
        sum += term;
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-z * z).exp() * sum
}

/// A built table: output codes indexed by input code minus the input type's minimum.
#[derive(Debug, Clone)]
enum Table {
    U8 { in_signed: bool, t: Box<[u8; 256]> },
    I8 { in_signed: bool, t: Box<[i8; 256]> },
}

fn fill<O: QElem>(act: Act, in_lo: i32, sx: f32, zx: i32, sy: f32, zy: i32) -> Box<[O; 256]> {
    let mut t = Box::new([O::from_i32_clamped(0); 256]);
    for (i, e) in t.iter_mut().enumerate() {
        let x = sx * (in_lo + i as i32 - zx) as f32;
        *e = requant::<O>(act.eval(x), sy, zy);
    }
    t
}

fn map<I: QElem, O: QElem>(x: &ArrayD<I>, t: &[O; 256]) -> ArrayD<O> {
    let lo = I::RANGE.0;
    x.mapv(|v| t[(v.to_i32() - lo) as usize])
}

/// A table-driven activation on u8/i8 tensors (see the module documentation).
#[derive(Debug)]
pub(super) struct Lookup {
    node: Node,
    act: Act,
    /// Whether the output type may differ from the input type (`QLinearLookup`; the
    /// `com.microsoft` operators have one type `T`).
    mixed: bool,
    /// Built at plan time when the parameters are constant.
    table: Option<Table>,
}

/// Builds the operator for `act` (input and output of one type), making its table now
/// if the parameters are constant.
pub(super) fn build(ctx: &BuildContext<'_>, act: Act) -> Result<Box<dyn Operator>> {
    build_typed(ctx, act, false)
}

fn build_typed(ctx: &BuildContext<'_>, act: Act, mixed: bool) -> Result<Box<dyn Operator>> {
    let node = ctx.node;
    let c = |i: usize| ctx.constant_inputs.get(i).copied().flatten();
    let absent = |i: usize| node.inputs.get(i).is_none_or(|s| s.is_empty());
    let params_known = c(1).is_some()
        && c(3).is_some()
        && (absent(2) || c(2).is_some())
        && (absent(4) || c(4).is_some());
    let x_dtype = ctx
        .input_types
        .first()
        .and_then(|t| t.as_ref())
        .and_then(|t| t.dtype);
    let x_signed = match (c(2), x_dtype) {
        (Some(Tensor::I8(_)), _) | (None, Some(DType::I8)) => Some(true),
        (Some(Tensor::U8(_)), _) | (None, Some(DType::U8)) => Some(false),
        _ => None,
    };
    let table = match (params_known, x_signed) {
        (true, Some(signed)) => {
            let consts: Vec<Option<&Tensor>> = (0..5).map(c).collect();
            Some(make_table(node, act, &consts, signed, mixed)?)
        }
        _ => None,
    };
    Ok(Box::new(Lookup {
        node: node.clone(),
        act,
        mixed,
        table,
    }))
}

/// The `(scale, zero point)` of inputs `s`, `z` for codes of type `T`.
fn param<T: QElem>(
    node: &Node,
    inputs: &[Option<&Tensor>],
    s: usize,
    z: usize,
) -> Result<(f32, i32)> {
    let st = input(node, inputs, s)?;
    let sc = super::params::scalar_scale(node, &scales_of(node, st, s)?, "scale")?;
    let zp = match inputs.get(z).copied().flatten() {
        None => 0,
        Some(t) => {
            let v = zp_as::<T>(node, &zero_points_of(node, t, z)?, "zero point")?;
            match v.as_slice() {
                [one] => one.to_i32(),
                _ => {
                    return Err(invalid(
                        node,
                        format!("{} zero points (input {z}); only one", v.len()),
                    ));
                }
            }
        }
    };
    Ok((sc, zp))
}

/// The table for inputs of signedness `x_signed`; the output type is the output zero
/// point's, or the input's when it is omitted (and must be the input's unless `mixed`).
fn make_table(
    node: &Node,
    act: Act,
    inputs: &[Option<&Tensor>],
    x_signed: bool,
    mixed: bool,
) -> Result<Table> {
    let (sx, zx, lo) = if x_signed {
        let (s, z) = param::<i8>(node, inputs, 1, 2)?;
        (s, z, i8::RANGE.0)
    } else {
        let (s, z) = param::<u8>(node, inputs, 1, 2)?;
        (s, z, u8::RANGE.0)
    };
    let y_signed = match inputs.get(4).copied().flatten() {
        Some(Tensor::I8(_)) => true,
        Some(Tensor::U8(_)) => false,
        Some(other) => {
            return Err(invalid(
                node,
                format!(
                    "zero point (input 4) of type {:?}: uint8 or int8",
                    other.dtype()
                ),
            ));
        }
        None => x_signed,
    };
    if y_signed != x_signed && !mixed {
        return Err(invalid(
            node,
            "output zero point of the other 8-bit type than the input (one type T)",
        ));
    }
    Ok(if y_signed {
        let (sy, zy) = param::<i8>(node, inputs, 3, 4)?;
        Table::I8 {
            in_signed: x_signed,
            t: fill::<i8>(act, lo, sx, zx, sy, zy),
        }
    } else {
        let (sy, zy) = param::<u8>(node, inputs, 3, 4)?;
        Table::U8 {
            in_signed: x_signed,
            t: fill::<u8>(act, lo, sx, zx, sy, zy),
        }
    })
}

impl Operator for Lookup {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let x = input(node, inputs, 0)?;
        let x_signed = match x {
            Tensor::U8(_) => false,
            Tensor::I8(_) => true,
            other => {
                return Err(invalid(
                    node,
                    format!("input of type {:?}: uint8 or int8", other.dtype()),
                ));
            }
        };
        let built;
        let table = match &self.table {
            Some(t) => t,
            None => {
                built = make_table(node, self.act, inputs, x_signed, self.mixed)?;
                &built
            }
        };
        let (Table::U8 { in_signed, .. } | Table::I8 { in_signed, .. }) = table;
        if *in_signed != x_signed {
            return Err(invalid(
                node,
                format!(
                    "input of type {:?}, but the table was built for the other 8-bit type \
                     (from the zero point or the declared input type)",
                    x.dtype()
                ),
            ));
        }
        let y = match (x, table) {
            (Tensor::U8(a), Table::U8 { t, .. }) => Tensor::U8(map(a, t)),
            (Tensor::U8(a), Table::I8 { t, .. }) => Tensor::I8(map(a, t)),
            (Tensor::I8(a), Table::U8 { t, .. }) => Tensor::U8(map(a, t)),
            (Tensor::I8(a), Table::I8 { t, .. }) => Tensor::I8(map(a, t)),
            _ => return Err(invalid(node, "input of an unsupported type")),
        };
        Ok(vec![y])
    }
}

/// Builds `com.edgeml` `QLinearLookup` (the activation from its `activation` attribute).
pub(super) fn build_lookup(ctx: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let name = Attrs::new(ctx.node).string("activation", "")?;
    build_typed(ctx, Act::parse(ctx.node, &name)?, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // Values of Python's `math.erfc` (the C library's).
        for (z, want) in [
            (0.0, 1.0),
            (0.3, 0.671_373_240_540_872_6),
            (1.0, 0.157_299_207_050_285_13),
            (2.5, 4.069_520_174_449_589e-4),
            (-1.0, 1.842_700_792_949_715),
            (5.0, 1.537_459_794_428_035_1e-12),
        ] {
            let got = erfc(z);
            assert!(
                (got - want).abs() <= 1e-13 * want,
                "erfc({z}) = {got}, want {want}"
            );
        }
    }
}
