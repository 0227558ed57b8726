//! The operator behind the Conv + Add (+ activation) fusion of [`super::optimize`], and
//! the activations a fused chain can end with.

use crate::{Error, Operator, Result, Tensor};

/// An activation that can end a fused chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    Relu,
    LeakyRelu(f32),
    Clip(f32, f32),
    Sigmoid,
    Tanh,
    HardSigmoid(f32, f32),
}

impl Act {
    /// `FusedConv`'s `activation` / `activation_params` attributes.
    pub(crate) fn attributes(self) -> (&'static str, Vec<f32>) {
        match self {
            Act::Relu => ("Relu", vec![]),
            Act::LeakyRelu(a) => ("LeakyRelu", vec![a]),
            Act::Clip(lo, hi) => ("Clip", vec![lo, hi]),
            Act::Sigmoid => ("Sigmoid", vec![]),
            Act::Tanh => ("Tanh", vec![]),
            Act::HardSigmoid(a, b) => ("HardSigmoid", vec![a, b]),
        }
    }

    /// Applies the activation in place with the standalone operators' semantics
    /// (NaN propagates through `Relu` and `Clip`; `Sigmoid`/`Tanh`/`HardSigmoid` are
    /// evaluated in `f64` as the standalone operators do).
    pub(crate) fn apply(self, v: &mut [f32]) {
        match self {
            Act::Relu => crate::ops::activation::relu_in_place(v),
            Act::LeakyRelu(a) => v
                .iter_mut()
                .for_each(|x| *x = if *x < 0.0 { *x * a } else { *x }),
            Act::Clip(lo, hi) => v.iter_mut().for_each(|x| {
                let y = if *x < lo { lo } else { *x };
                *x = if y > hi { hi } else { y };
            }),
            Act::Sigmoid => v.iter_mut().for_each(|x| {
                let t = f64::from(*x);
                *x = if t >= 0.0 {
                    1.0 / (1.0 + (-t).exp())
                } else {
                    t.exp() / (1.0 + t.exp())
                } as f32;
            }),
            Act::Tanh => v.iter_mut().for_each(|x| *x = f64::from(*x).tanh() as f32),
            Act::HardSigmoid(a, b) => v.iter_mut().for_each(|x| {
                *x = (f64::from(a) * f64::from(*x) + f64::from(b)).clamp(0.0, 1.0) as f32;
            }),
        }
    }
}

/// `act(Conv(X, W, B) + Z)`: `Z` is added to the convolution's output in place when the
/// shapes agree, else through the original `Add`/`Sum` (broadcasting).
#[derive(Debug)]
pub(crate) struct ConvAdd {
    pub(crate) conv: Box<dyn Operator>,
    pub(crate) add: Box<dyn Operator>,
    pub(crate) conv_first: bool,
    pub(crate) act: Option<Act>,
}

impl Operator for ConvAdd {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let z = inputs.get(3).copied().flatten();
        let mut y = self
            .conv
            .run(&inputs[..3.min(inputs.len())])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidModel("fused Conv produced no output".into()))?;
        let mut out = match (&mut y, z) {
            (Tensor::F32(ya), Some(Tensor::F32(za))) if ya.shape() == za.shape() => {
                *ya += za;
                y
            }
            (_, z) => {
                let args = if self.conv_first {
                    [Some(&y), z]
                } else {
                    [z, Some(&y)]
                };
                self.add
                    .run(&args)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::InvalidModel("fused Add produced no output".into()))?
            }
        };
        if let Some(act) = self.act {
            match &mut out {
                Tensor::F32(a) => match a.as_slice_mut() {
                    Some(s) => act.apply(s),
                    None => a
                        .iter_mut()
                        .for_each(|x| act.apply(std::slice::from_mut(x))),
                },
                other => {
                    return Err(Error::InvalidInput(format!(
                        "fused activation needs float input, found {:?}",
                        other.dtype()
                    )));
                }
            }
        }
        Ok(vec![out])
    }
}
