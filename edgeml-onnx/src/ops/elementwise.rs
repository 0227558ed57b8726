//! Element-wise operators with numpy broadcasting: arithmetic, comparison, logic,
//! variadic `Sum`/`Mean`/`Max`/`Min`, `Where`, and integer-capable unary ops.

use super::num::{Num, zip_bcast};
use super::util::{Elem, broadcast_shapes, dtype_err, input, slim};
use crate::ops::attr::{Attrs, describe};
use crate::{BuildContext, Error, Node, Operator, Registry, Result, Tensor, with_dtype, with_num};
use ndarray::{ArrayD, IxDyn, Zip};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Mod { fmod: bool },
    Min,
    Max,
}

fn arith<T: Num>(node: &Node, k: Arith, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>> {
    match k {
        Arith::Add => zip_bcast(node, a, b, T::add),
        Arith::Sub => zip_bcast(node, a, b, T::sub),
        Arith::Mul => zip_bcast(node, a, b, T::mul),
        Arith::Div => zip_bcast(node, a, b, T::div),
        Arith::Pow => zip_bcast(node, a, b, T::pow),
        Arith::Mod { fmod } => zip_bcast(node, a, b, |x, y| T::rem(x, y, fmod)),
        Arith::Min => zip_bcast(node, a, b, T::min),
        Arith::Max => zip_bcast(node, a, b, T::max),
    }
}

fn arith_t(node: &Node, k: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() != b.dtype() && k != Arith::Pow {
        return Err(dtype_err(node, 1, b.dtype(), &[a.dtype()]));
    }
    with_num!(a.dtype(), T => {
        let x = T::get(a).ok_or_else(|| dtype_err(node, 0, a.dtype(), &[T::DTYPE]))?;
        let y_cast;
        let y = match T::get(b) {
            Some(y) => y,
            None => {
                // Pow: the exponent may have another numeric type.
                y_cast = super::util::cast_to::<T>(b);
                &y_cast
            }
        };
        Ok(T::wrap(arith::<T>(node, k, x, y)?))
    })
}

#[derive(Debug)]
struct Binary {
    node: Node,
    k: Arith,
}

impl Operator for Binary {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = input(&self.node, inputs, 0)?;
        let b = input(&self.node, inputs, 1)?;
        Ok(vec![arith_t(&self.node, self.k, a, b)?])
    }
}

/// `Sum`, `Mean`, `Max`, `Min` over any number of inputs.
#[derive(Debug)]
struct Variadic {
    node: Node,
    k: Arith,
    mean: bool,
}

impl Operator for Variadic {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let mut acc = input(&self.node, inputs, 0)?.clone();
        for i in 1..inputs.len() {
            acc = arith_t(&self.node, self.k, &acc, input(&self.node, inputs, i)?)?;
        }
        if self.mean && inputs.len() > 1 {
            let n = inputs.len() as f64;
            acc = with_num!(acc.dtype(), T => {
                let a = T::get(&acc).ok_or_else(|| dtype_err(&self.node, 0, acc.dtype(), &[]))?;
                Ok(T::wrap(a.mapv(|v| T::from_f64(Elem::to_f64(v) / n))))
            })?;
        }
        Ok(vec![acc])
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug)]
struct Compare {
    node: Node,
    k: Cmp,
}

fn compare<T: Elem>(node: &Node, k: Cmp, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<bool>> {
    match k {
        Cmp::Eq => zip_bcast(node, a, b, |x, y| x == y),
        Cmp::Lt => zip_bcast(node, a, b, |x, y| x < y),
        Cmp::Gt => zip_bcast(node, a, b, |x, y| x > y),
        Cmp::Le => zip_bcast(node, a, b, |x, y| x <= y),
        Cmp::Ge => zip_bcast(node, a, b, |x, y| x >= y),
    }
}

impl Operator for Compare {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = input(&self.node, inputs, 0)?;
        let b = input(&self.node, inputs, 1)?;
        let out = with_dtype!(a.dtype(), T => {
            let x = T::get(a).ok_or_else(|| dtype_err(&self.node, 0, a.dtype(), &[]))?;
            let y = T::get(b).ok_or_else(|| dtype_err(&self.node, 1, b.dtype(), &[a.dtype()]))?;
            compare::<T>(&self.node, self.k, x, y)
        })?;
        Ok(vec![Tensor::Bool(out)])
    }
}

#[derive(Debug, Clone, Copy)]
enum Logic {
    And,
    Or,
    Xor,
}

#[derive(Debug)]
struct LogicOp {
    node: Node,
    k: Logic,
}

impl Operator for LogicOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = super::util::typed::<bool>(&self.node, inputs, 0)?;
        let b = super::util::typed::<bool>(&self.node, inputs, 1)?;
        let out = match self.k {
            Logic::And => zip_bcast(&self.node, a, b, |x, y| x && y),
            Logic::Or => zip_bcast(&self.node, a, b, |x, y| x || y),
            Logic::Xor => zip_bcast(&self.node, a, b, |x, y| x != y),
        }?;
        Ok(vec![Tensor::Bool(out)])
    }
}

#[derive(Debug)]
struct Not {
    node: Node,
}

impl Operator for Not {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = super::util::typed::<bool>(&self.node, inputs, 0)?;
        Ok(vec![Tensor::Bool(a.mapv(|x| !x))])
    }
}

#[derive(Debug)]
struct Where {
    node: Node,
}

impl Operator for Where {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let c = super::util::typed::<bool>(node, inputs, 0)?;
        let x = input(node, inputs, 1)?;
        let y = input(node, inputs, 2)?;
        let shape = broadcast_shapes(node, c.shape(), x.shape())?;
        let shape = broadcast_shapes(node, &shape, y.shape())?;
        let sh = IxDyn(&shape);
        let bad = || Error::ShapeMismatch(format!("{}: inputs do not broadcast", describe(node)));
        let cv = c.broadcast(sh.clone()).ok_or_else(bad)?;
        let out = with_dtype!(x.dtype(), T => {
            let xa = T::get(x).ok_or_else(|| dtype_err(node, 1, x.dtype(), &[]))?;
            let ya = T::get(y).ok_or_else(|| dtype_err(node, 2, y.dtype(), &[x.dtype()]))?;
            let xv = xa.broadcast(sh.clone()).ok_or_else(bad)?;
            let yv = ya.broadcast(sh.clone()).ok_or_else(bad)?;
            Ok(T::wrap(
                Zip::from(&cv).and(&xv).and(&yv).map_collect(|&c, &x, &y| if c { x } else { y }),
            ))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug, Clone, Copy)]
enum IntUnary {
    Neg,
    Abs,
    Relu,
    Sign,
}

/// Unary ops defined for integers as well as floats.
#[derive(Debug)]
struct NumUnary {
    node: Node,
    k: IntUnary,
}

fn num_unary<T: Num>(k: IntUnary, a: &ArrayD<T>) -> ArrayD<T> {
    match k {
        IntUnary::Neg => a.mapv(T::neg),
        IntUnary::Abs => a.mapv(T::abs),
        IntUnary::Relu => a.mapv(|x| {
            // NaN passes through, as onnxruntime does.
            if x > T::ZERO || T::is_nan(x) {
                x
            } else {
                T::ZERO
            }
        }),
        IntUnary::Sign => a.mapv(|x| {
            if x > T::ZERO {
                T::ONE
            } else if x < T::ZERO {
                T::neg(T::ONE)
            } else {
                x
            }
        }),
    }
}

impl Operator for NumUnary {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = input(&self.node, inputs, 0)?;
        if let (IntUnary::Relu, Tensor::F32(x)) = (self.k, a)
            && let Some(src) = x.as_slice()
        {
            // One pass into a (recycled) buffer; same results as the generic path.
            let mut v = crate::buffers::take_f32_empty(src.len());
            v.extend_from_slice(src);
            crate::ops::activation::relu_in_place(&mut v);
            return Ok(vec![crate::buffers::f32_tensor(x.shape(), v)?]);
        }
        let out = with_num!(a.dtype(), T => {
            let x = T::get(a).ok_or_else(|| dtype_err(&self.node, 0, a.dtype(), &[]))?;
            Ok(T::wrap(num_unary::<T>(self.k, x)))
        })?;
        Ok(vec![out])
    }
}

/// Registers the element-wise operators.
pub fn register(r: &mut Registry) {
    for (name, k) in [
        ("Add", Arith::Add),
        ("Sub", Arith::Sub),
        ("Mul", Arith::Mul),
        ("Div", Arith::Div),
        ("Pow", Arith::Pow),
    ] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            if c.opset < 7 && Attrs::new(c.node).int("broadcast", 0)? != 0 {
                return Err(crate::ops::attr::unsupported(
                    c.node,
                    "legacy (opset < 7) broadcast attribute",
                ));
            }
            Ok(Box::new(Binary {
                node: slim(c.node),
                k,
            }) as Box<dyn Operator>)
        });
    }
    r.register("", "Mod", 10, i64::MAX, |c: &BuildContext<'_>| {
        let fmod = Attrs::new(c.node).int("fmod", 0)? != 0;
        Ok(Box::new(Binary {
            node: slim(c.node),
            k: Arith::Mod { fmod },
        }) as Box<dyn Operator>)
    });
    for (name, k, mean) in [
        ("Sum", Arith::Add, false),
        ("Mean", Arith::Add, true),
        ("Max", Arith::Max, false),
        ("Min", Arith::Min, false),
    ] {
        r.register("", name, 6, i64::MAX, move |c: &BuildContext<'_>| {
            Ok(Box::new(Variadic {
                node: slim(c.node),
                k,
                mean,
            }) as Box<dyn Operator>)
        });
    }
    for (name, k) in [
        ("Equal", Cmp::Eq),
        ("Less", Cmp::Lt),
        ("Greater", Cmp::Gt),
        ("LessOrEqual", Cmp::Le),
        ("GreaterOrEqual", Cmp::Ge),
    ] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            Ok(Box::new(Compare {
                node: slim(c.node),
                k,
            }) as Box<dyn Operator>)
        });
    }
    for (name, k) in [("And", Logic::And), ("Or", Logic::Or), ("Xor", Logic::Xor)] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            Ok(Box::new(LogicOp {
                node: slim(c.node),
                k,
            }) as Box<dyn Operator>)
        });
    }
    r.register("", "Not", 1, i64::MAX, |c: &BuildContext<'_>| {
        Ok(Box::new(Not { node: slim(c.node) }) as Box<dyn Operator>)
    });
    r.register("", "Where", 9, i64::MAX, |c: &BuildContext<'_>| {
        Ok(Box::new(Where { node: slim(c.node) }) as Box<dyn Operator>)
    });
    for (name, k) in [
        ("Neg", IntUnary::Neg),
        ("Abs", IntUnary::Abs),
        ("Relu", IntUnary::Relu),
        ("Sign", IntUnary::Sign),
    ] {
        r.register("", name, 1, i64::MAX, move |c: &BuildContext<'_>| {
            Ok(Box::new(NumUnary {
                node: slim(c.node),
                k,
            }) as Box<dyn Operator>)
        });
    }
}
