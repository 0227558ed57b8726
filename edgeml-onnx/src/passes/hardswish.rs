//! `x · clip(x + 3, 0, 6) / 6` written out in element-wise operators → `HardSwish`.

use super::{Pass, constants, default_domain};
use crate::{GraphIndex, Model, Node, Result, Tensor};
use std::collections::HashMap;

/// Rewrites the element-wise spelling of hard-swish that converters write (tf2onnx for
/// Keras' `hard_swish`, older PyTorch and Paddle exports) into one `HardSwish` node
/// (opset 14 and later only; older models are left alone):
/// - `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`, and with `Mul(…, 1/6)` for the division;
/// - `Mul(x, Div(Clip(Add(x, 3), 0, 6), 6))`, likewise;
///
/// with the operands of `Add` and `Mul` in either order, scalar constants, and every
/// intermediate value read only inside the pattern. The planner then fuses the
/// `HardSwish` into a preceding convolution.
///
/// Numerics: `HardSwish` computes `x · clamp(x/6 + 1/2, 0, 1)`, a different order of
/// roundings than the pattern, so results may differ in the last bits (the tests bound
/// the difference by 2⁻²⁰·(|y| + |x|)). This is why the pass belongs to the extended
/// level only.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuseHardSwish;

impl Pass for FuseHardSwish {
    fn name(&self) -> &'static str {
        "fuse-hardswish"
    }

    fn run(&self, model: &mut Model) -> Result<usize> {
        if model.opset("").unwrap_or(0) < 14 {
            return Ok(0);
        }
        let mut done = 0;
        loop {
            let found = {
                let g = &model.graph;
                let consts = constants(g, model.ir_version);
                let ix = g.index();
                (0..g.nodes.len()).find_map(|i| matched(&g.nodes, &ix, &consts, i))
            };
            let Some(m) = found else { break };
            let mut remove = m.inner.clone();
            remove.sort_unstable();
            let name = model.graph.nodes[m.last].name.clone();
            let hs = Node::new("HardSwish", &[m.x.as_str()], &[m.y.as_str()]).with_name(&name);
            model.graph.replace_node(m.last, hs)?;
            for &k in remove.iter().rev() {
                model.graph.remove_node(k)?;
            }
            done += 1;
        }
        Ok(done)
    }
}

/// One occurrence: the input `x`, the output `y`, the node producing `y` and the
/// other nodes of the pattern.
struct Match {
    x: String,
    y: String,
    last: usize,
    inner: Vec<usize>,
}

/// The scalar value of constant `name`, if it is one.
fn scalar(consts: &HashMap<&str, &Tensor>, name: &str) -> Option<f32> {
    let t = consts.get(name)?;
    let a = t.as_f32()?;
    (a.len() == 1).then(|| a.iter().next().copied()).flatten()
}

/// The pattern ending at node `i`, if there is one.
fn matched(
    nodes: &[Node],
    ix: &GraphIndex,
    consts: &HashMap<&str, &Tensor>,
    i: usize,
) -> Option<Match> {
    let n = &nodes[i];
    if !default_domain(n) || n.outputs.len() != 1 || n.inputs.len() != 2 {
        return None;
    }
    let private = |v: &str| ix.uses(v) == 1 && !ix.is_output(v);
    let node_of = |v: &str, op: &str| -> Option<usize> {
        let p = ix.producer(v)?;
        let m = &nodes[p];
        (default_domain(m) && m.op_type == op && m.outputs.len() == 1 && private(v)).then_some(p)
    };
    // `v / 6` or `v · (1/6)`: the node index and `v`.
    let sixth = |k: usize| -> Option<String> {
        let m = &nodes[k];
        match m.op_type.as_str() {
            "Div" if scalar(consts, &m.inputs[1]) == Some(6.0) => Some(m.inputs[0].clone()),
            "Mul" => (0..2).find_map(|j| {
                let c = scalar(consts, &m.inputs[1 - j])?;
                ((c - 1.0 / 6.0).abs() <= 1e-7).then(|| m.inputs[j].clone())
            }),
            _ => None,
        }
    };
    // `Clip(Add(x, 3), 0, 6)` producing `v`: x and the two node indices.
    let relu6_of_x_plus_3 = |v: &str| -> Option<(String, [usize; 2])> {
        let c = node_of(v, "Clip")?;
        let clip = &nodes[c];
        if clip.inputs.len() != 3
            || scalar(consts, &clip.inputs[1]) != Some(0.0)
            || scalar(consts, &clip.inputs[2]) != Some(6.0)
        {
            return None;
        }
        let a = node_of(&clip.inputs[0], "Add")?;
        let add = &nodes[a];
        if add.inputs.len() != 2 {
            return None;
        }
        let x = (0..2).find_map(|j| {
            (scalar(consts, &add.inputs[1 - j]) == Some(3.0)).then(|| add.inputs[j].clone())
        })?;
        Some((x, [c, a]))
    };
    let y = n.outputs[0].clone();
    // Form 1: (x · relu6(x + 3)) / 6.
    if let Some(prod) = sixth(i)
        && let Some(m) = node_of(&prod, "Mul")
        && nodes[m].inputs.len() == 2
    {
        let mul = &nodes[m];
        for j in 0..2 {
            if let Some((x, [c, a])) = relu6_of_x_plus_3(&mul.inputs[1 - j])
                && mul.inputs[j] == x
            {
                return Some(Match {
                    x,
                    y,
                    last: i,
                    inner: vec![m, c, a],
                });
            }
        }
    }
    // Form 2: x · (relu6(x + 3) / 6).
    if n.op_type == "Mul" {
        for j in 0..2 {
            let Some(d) = ix.producer(&n.inputs[1 - j]) else {
                continue;
            };
            if !default_domain(&nodes[d]) || !private(&n.inputs[1 - j]) {
                continue;
            }
            if let Some(r) = sixth(d)
                && let Some((x, [c, a])) = relu6_of_x_plus_3(&r)
                && n.inputs[j] == x
            {
                return Some(Match {
                    x,
                    y,
                    last: i,
                    inner: vec![d, c, a],
                });
            }
        }
    }
    None
}
