//! The attributes of convolutions and pools, read one way by every operator that has
//! them: the float `Conv`, `ConvTranspose` and pools here, and the INT8 `QLinearConv` /
//! `ConvInteger` of `edgeml-quant`.

use crate::Node;
use crate::Result;
use crate::ops::attr::{Attrs, invalid, shape_mismatch};

/// The padding mode of convolutions and pools (`auto_pad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    /// `NOTSET` (or empty): the explicit `pads` apply.
    NotSet,
    /// `SAME_UPPER`: output extent `ceil(input / stride)`, an odd pad goes at the end.
    SameUpper,
    /// `SAME_LOWER`: as `SAME_UPPER`, an odd pad goes at the beginning.
    SameLower,
    /// `VALID`: no padding.
    Valid,
}

impl AutoPad {
    /// Reads `node`'s `auto_pad` attribute (`NOTSET` when absent).
    ///
    /// # Errors
    /// The attribute is not a string or names an unknown mode.
    pub fn from_node(node: &Node) -> Result<Self> {
        match Attrs::new(node).string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => Ok(AutoPad::NotSet),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            "VALID" => Ok(AutoPad::Valid),
            other => Err(invalid(node, format!("unknown auto_pad {other:?}"))),
        }
    }
}

/// The attributes of a convolution that do not depend on its operands: `group` and the
/// optional `kernel_shape` (the spatial window, [`Window`], needs the weights' extents).
///
/// ```
/// use edgeml_onnx::{Attribute, Node};
/// use edgeml_onnx::ops::nn::ConvAttrs;
///
/// let node = Node {
///     op_type: "Conv".into(),
///     attributes: vec![
///         ("group".into(), Attribute::Int(2)),
///         ("strides".into(), Attribute::Ints(vec![2, 2])),
///     ],
///     ..Default::default()
/// };
/// let conv = ConvAttrs::from_node(&node).unwrap();
/// assert_eq!(conv.group(), 2);
/// let win = conv.window(&node, &[3, 3]).unwrap();
/// assert_eq!(win.strides(), [2, 2]);
/// let [out, begin, end] = win.resolve(&node, &[8, 8]).unwrap();
/// assert_eq!((out, begin, end), (vec![3, 3], vec![0, 0], vec![0, 0]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvAttrs {
    group: usize,
    kernel_shape: Option<Vec<usize>>,
}

impl ConvAttrs {
    /// Reads `group` (default 1) and `kernel_shape`.
    ///
    /// # Errors
    /// Attributes of the wrong type, a `group` below 1 or a negative kernel extent.
    pub fn from_node(node: &Node) -> Result<Self> {
        let a = Attrs::new(node);
        let group = usize::try_from(a.int("group", 1)?)
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| invalid(node, "group must be positive"))?;
        Ok(Self {
            group,
            kernel_shape: a.usizes_opt("kernel_shape")?,
        })
    }

    /// The number of groups (at least 1).
    pub fn group(&self) -> usize {
        self.group
    }

    /// The `kernel_shape` attribute, if given.
    pub fn kernel_shape(&self) -> Option<&[usize]> {
        self.kernel_shape.as_deref()
    }

    /// Checks `kernel_shape` (when given) against the weights' spatial extents.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when they differ.
    pub fn check_kernel(&self, node: &Node, weight_spatial: &[usize]) -> Result<()> {
        match &self.kernel_shape {
            Some(k) if k != weight_spatial => Err(shape_mismatch(
                node,
                format!("kernel_shape {k:?} but weight spatial shape {weight_spatial:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// The spatial window for weights of spatial extents `weight_spatial`, after
    /// [`ConvAttrs::check_kernel`].
    ///
    /// # Errors
    /// As [`ConvAttrs::check_kernel`] and [`Window::from_node`].
    pub fn window(&self, node: &Node, weight_spatial: &[usize]) -> Result<Window> {
        self.check_kernel(node, weight_spatial)?;
        Window::from_node(node, weight_spatial.to_vec())
    }
}

/// Spatial window attributes (`strides`, `dilations`, `pads`, `auto_pad`, `ceil_mode`)
/// shared by Conv, the pools and the quantized convolutions of `edgeml-quant`
/// (`QLinearConv`, `ConvInteger`), so every operator reads them the same way.
#[derive(Debug, Clone)]
pub struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// `[begin_0, …, begin_k, end_0, …, end_k]` as given (ignored unless NOTSET).
    pads: Vec<usize>,
    auto_pad: AutoPad,
    ceil_mode: bool,
}

impl Window {
    /// Reads the attributes; `kernel` comes from the attribute or the caller.
    ///
    /// # Errors
    /// Attributes of the wrong type or length, zero kernel extents, strides or
    /// dilations, or an unknown `auto_pad`.
    pub fn from_node(node: &Node, kernel: Vec<usize>) -> Result<Self> {
        let k = kernel.len();
        let a = Attrs::new(node);
        let w = Window {
            strides: a.usizes("strides", k, 1)?,
            dilations: a.usizes("dilations", k, 1)?,
            pads: a.usizes("pads", 2 * k, 0)?,
            auto_pad: AutoPad::from_node(node)?,
            ceil_mode: a.int("ceil_mode", 0)? != 0,
            kernel,
        };
        if w.strides.contains(&0) || w.dilations.contains(&0) || w.kernel.contains(&0) {
            return Err(invalid(
                node,
                "kernel_shape, strides and dilations must be positive",
            ));
        }
        Ok(w)
    }

    /// The kernel extents.
    pub fn kernel(&self) -> &[usize] {
        &self.kernel
    }

    /// The strides, one per spatial axis.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The dilations, one per spatial axis.
    pub fn dilations(&self) -> &[usize] {
        &self.dilations
    }

    /// The `pads` attribute, `[begin_0, …, begin_k, end_0, …, end_k]` (zeros when
    /// absent); they apply only when [`Window::auto_pad`] is [`AutoPad::NotSet`].
    pub fn pads(&self) -> &[usize] {
        &self.pads
    }

    /// The padding mode.
    pub fn auto_pad(&self) -> AutoPad {
        self.auto_pad
    }

    /// Whether output extents round up (`ceil_mode = 1`).
    pub fn ceil_mode(&self) -> bool {
        self.ceil_mode
    }

    /// Output extents, begin pads and end pads for the input extents `input`, with
    /// `auto_pad` resolved; the end pads are the ones the output extents use (padding
    /// beyond the last window is never read).
    ///
    /// # Errors
    /// As [`Window::geometry`].
    pub fn resolve(&self, node: &Node, input: &[usize]) -> Result<[Vec<usize>; 3]> {
        let (out, begin) = self.geometry(node, input)?;
        let end = (0..out.len())
            .map(|i| {
                let eff = (self.kernel[i] - 1) * self.dilations[i] + 1;
                ((out[i].max(1) - 1) * self.strides[i] + eff).saturating_sub(input[i] + begin[i])
            })
            .collect();
        Ok([out, begin, end])
    }

    /// Output extents and begin pads for the input extents `input`.
    ///
    /// # Errors
    /// A rank that differs from the kernel's, a window larger than the padded input, or
    /// an overflowing kernel extent.
    #[allow(clippy::needless_range_loop)] // walks five parallel per-axis lists
    pub fn geometry(&self, node: &Node, input: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let k = self.kernel.len();
        if input.len() != k {
            return Err(shape_mismatch(
                node,
                format!("{}-D input for a {k}-D window", input.len()),
            ));
        }
        let mut out = Vec::with_capacity(k);
        let mut begin = Vec::with_capacity(k);
        for i in 0..k {
            let eff = (self.kernel[i] - 1)
                .checked_mul(self.dilations[i])
                .and_then(|x| x.checked_add(1))
                .ok_or_else(|| invalid(node, "kernel extent overflows"))?;
            let (s, n) = (self.strides[i], input[i]);
            let (o, pb) = match self.auto_pad {
                AutoPad::NotSet | AutoPad::Valid => {
                    let (pb, pe) = if self.auto_pad == AutoPad::Valid {
                        (0, 0)
                    } else {
                        (self.pads[i], self.pads[k + i])
                    };
                    let padded = n + pb + pe;
                    if padded < eff {
                        return Err(shape_mismatch(
                            node,
                            format!(
                                "window {eff} larger than padded input {padded} on spatial axis {i}"
                            ),
                        ));
                    }
                    let span = padded - eff;
                    let mut o = if self.ceil_mode {
                        span.div_ceil(s) + 1
                    } else {
                        span / s + 1
                    };
                    if self.ceil_mode && (o - 1) * s >= n + pb {
                        o -= 1;
                    }
                    (o, pb)
                }
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let o = n.div_ceil(s);
                    let total = ((o.max(1) - 1) * s + eff).saturating_sub(n);
                    let pb = if self.auto_pad == AutoPad::SameUpper {
                        total / 2
                    } else {
                        total - total / 2
                    };
                    (o, pb)
                }
            };
            out.push(o);
            begin.push(pb);
        }
        Ok((out, begin))
    }
}
