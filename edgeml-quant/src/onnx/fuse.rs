//! The QDQ fusion: `DequantizeLinear → op → QuantizeLinear` groups become one INT8
//! operator, as onnxruntime's QDQ graph transformers do.

use edgeml_onnx::{Attribute, Graph, Model, Node, OpsetImport, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};

mod exact;
mod groups;

/// Which operators [`fuse_qdq_for`] may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FuseTarget {
    /// Everything edgeml runs, including its own `com.edgeml` operators (a
    /// `QLinearConv` with a fused `Relu`, activations through tables): for execution in
    /// edgeml. What [`fuse_qdq`] writes.
    #[default]
    Edgeml,
    /// Standard-domain ONNX operators only: `QLinearConv`, `QLinearMatMul` and the
    /// 8-bit exact operators; every other group stays in QDQ form. Any runtime with the
    /// ONNX quantized operators runs the result.
    Onnx,
    /// [`FuseTarget::Onnx`] plus onnxruntime's `com.microsoft` contrib operators that
    /// its own QOperator quantizer writes: `QGemm`, `QLinearAdd`, `QLinearSigmoid`,
    /// `QLinearLeakyRelu`, `QLinearAveragePool`, `QLinearGlobalAveragePool`,
    /// `QLinearConcat`.
    OnnxRuntime,
}

impl FuseTarget {
    fn contrib(self) -> bool {
        self != FuseTarget::Onnx
    }
    fn edgeml(self) -> bool {
        self == FuseTarget::Edgeml
    }
}

/// What [`fuse_qdq`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuseReport {
    /// Fused operators written, by operator type (e.g. `QLinearConv: 52`).
    pub fused: BTreeMap<String, usize>,
    /// Nodes removed (the `DequantizeLinear`/`QuantizeLinear`/activation nodes that the
    /// fused operators absorbed).
    pub removed: usize,
}

impl FuseReport {
    /// Total fused operators.
    pub fn total(&self) -> usize {
        self.fused.values().sum()
    }
}

impl std::fmt::Display for FuseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fused.is_empty() {
            return write!(f, "no QDQ groups fused");
        }
        let parts: Vec<String> = self.fused.iter().map(|(k, v)| format!("{v} {k}")).collect();
        write!(
            f,
            "fused {} ({} nodes removed)",
            parts.join(", "),
            self.removed
        )
    }
}

/// Fuses the QDQ groups of `model`'s main graph into INT8 operators, in place:
/// - `DQ(x), DQ(w)[, DQ(b) | float b] → Conv → [Relu →] Q` becomes `QLinearConv`
///   (a fused `Relu` gives the `com.edgeml` variant, which clamps at the output zero
///   point);
/// - `DQ(a), DQ(b) → MatMul → Q` becomes `QLinearMatMul`;
/// - `DQ(a), DQ(b)[, bias] → Gemm → Q` becomes `com.microsoft` `QGemm`;
/// - `DQ(a), DQ(b) → Add → Q` becomes `com.microsoft` `QLinearAdd`;
/// - `DQ → Sigmoid/HardSigmoid/HardSwish/Tanh/Gelu/LeakyRelu/Relu/Clip → Q` (standard
///   or `com.microsoft` `Gelu`; `Clip` with constant bounds) becomes `com.edgeml`
///   `QLinearLookup`, a 256-entry table built at plan time (see the module docs of
///   [`crate::onnx`]); onnxruntime does the same for Sigmoid and LeakyRelu;
/// - `DQ → AveragePool → Q` becomes `com.microsoft` `QLinearAveragePool`, `DQ →
///   GlobalAveragePool → Q` `QLinearGlobalAveragePool` (one 8-bit type on both sides);
/// - `DQ, DQ, … → Concat → Q` becomes `com.microsoft` `QLinearConcat`, or runs on the
///   codes when all operands are quantized like the output;
/// - `DQ → op → Q` with equal parameters on both sides, for the operators that only move
///   or select values (`MaxPool`, `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`,
///   `Transpose`, `Identity`, `Slice`, `Gather`, `Split`, `Resize` in `nearest` mode,
///   `Pad` whose constant is a code), loses its `DQ`/`Q` and runs on the codes.
///
/// A group is fused only when it is exact to do so: the float result feeds nothing but
/// the `QuantizeLinear` (and is not a graph output), the activation and output
/// quantization are per-tensor, the weight quantization is per-tensor or per output
/// channel, every scale and zero point is an initializer, and a quantized bias has the
/// scale `x_scale · w_scale` (a float bias is quantized to int32 with that scale, as
/// onnxruntime's quantizer does). Everything else is left to run in float. The fused
/// model is meant for execution (the `com.edgeml` domain is edgeml's own); see
/// [`fuse_qdq_for`] for files other runtimes read.
pub fn fuse_qdq(model: &mut Model) -> FuseReport {
    fuse_qdq_for(model, FuseTarget::Edgeml)
}

/// [`fuse_qdq`] writing only the operators that `target` allows: with
/// [`FuseTarget::Onnx`] or [`FuseTarget::OnnxRuntime`] the result is a QOperator model
/// for other runtimes (as onnxruntime's `quantize_static` with `QuantFormat.QOperator`
/// writes it), the groups without such an operator left in QDQ form.
pub fn fuse_qdq_for(model: &mut Model, target: FuseTarget) -> FuseReport {
    let g = &mut model.graph;
    let mut report = FuseReport::default();
    let mut dead: HashSet<usize> = HashSet::new();
    let mut new_inits: Vec<(String, Tensor)> = Vec::new();
    let producer: HashMap<String, usize> = g
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i)))
        .collect();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for v in &n.inputs {
            consumers.entry(v.clone()).or_default().push(i);
        }
    }
    let outputs: HashSet<String> = g.outputs.iter().map(|o| o.name.clone()).collect();
    let only_consumer = |v: &str| -> Option<usize> {
        match consumers.get(v).map(Vec::as_slice) {
            Some([c]) if !outputs.contains(v) => Some(*c),
            _ => None,
        }
    };
    let mut rewrites: Vec<(usize, Node, Vec<usize>)> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        if !node.domain.is_empty() || !matches!(node.op_type.as_str(), "Conv" | "MatMul" | "Gemm") {
            continue;
        }
        let Some(out) = node.outputs.first() else {
            continue;
        };
        let Some(mut next) = only_consumer(out) else {
            continue;
        };
        let mut absorbed = Vec::new();
        let mut relu = false;
        if g.nodes[next].op_type == "Relu"
            && g.nodes[next].domain.is_empty()
            && node.op_type == "Conv"
            && target.edgeml()
        {
            relu = true;
            absorbed.push(next);
            let Some(n2) = g.nodes[next].outputs.first().and_then(|o| only_consumer(o)) else {
                continue;
            };
            next = n2;
        }
        let q = &g.nodes[next];
        if q.op_type != "QuantizeLinear"
            || !q.domain.is_empty()
            || q.inputs.len() < 3
            || q.outputs.len() != 1
        {
            continue;
        }
        let q_out = q.outputs.clone();
        absorbed.push(next);
        let dq = |v: &str| -> Option<&Node> {
            producer.get(v).map(|&p| &g.nodes[p]).filter(|n| {
                n.op_type == "DequantizeLinear" && n.domain.is_empty() && n.inputs.len() >= 2
            })
        };
        let (Some(xdq), Some(wdq)) = (dq(&node.inputs[0]), node.inputs.get(1).and_then(|v| dq(v)))
        else {
            continue;
        };
        let Some(f) = Group::new(g, node, xdq, wdq, q) else {
            continue;
        };
        let fused = match node.op_type.as_str() {
            "Conv" => f.conv(g, node, relu, &mut new_inits),
            "MatMul" => f.matmul(node),
            _ if target.contrib() => f.gemm(g, node, &mut new_inits),
            _ => None,
        };
        if let Some(mut n) = fused {
            n.outputs = q_out;
            rewrites.push((i, n, absorbed));
        }
    }
    for (i, n, absorbed) in rewrites {
        *report.fused.entry(n.op_type.clone()).or_default() += 1;
        g.nodes[i] = n;
        dead.extend(absorbed);
    }
    g.initializers.extend(new_inits);
    if target.contrib() {
        let (adds, add_dead) = fuse_adds(g, &producer, &only_consumer);
        if adds > 0 {
            report.fused.insert("QLinearAdd".into(), adds);
        }
        dead.extend(add_dead);
        let (counts, q_dead) =
            groups::fuse_single_input(g, &producer, &only_consumer, &dead, target);
        report.fused.extend(counts);
        dead.extend(q_dead);
    }
    let (counts, q_dead) = groups::fuse_concats(g, &producer, &only_consumer, target);
    report.fused.extend(counts);
    dead.extend(q_dead);
    let (dropped, q_dead) = exact::drop_qdq_around_exact_ops(g, &producer, &only_consumer);
    if dropped > 0 {
        *report.fused.entry("8-bit exact ops".into()).or_default() += dropped;
    }
    dead.extend(q_dead);
    report.removed = dead.len();
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !dead.contains(&(k - 1))
    });
    report.removed += remove_dead_dq(g);
    for (domain, op) in [
        ("com.edgeml", "QLinearConv"),
        ("com.edgeml", "QLinearLookup"),
        ("com.microsoft", "QLinearSigmoid"),
        ("com.microsoft", "QLinearLeakyRelu"),
        ("com.microsoft", "QGemm"),
        ("com.microsoft", "QLinearAdd"),
        ("com.microsoft", "QLinearAveragePool"),
        ("com.microsoft", "QLinearGlobalAveragePool"),
        ("com.microsoft", "QLinearConcat"),
    ] {
        let used = report.fused.contains_key(op) && g.nodes.iter().any(|n| n.domain == domain);
        if used && !model.opset_imports.iter().any(|o| o.domain == domain) {
            model.opset_imports.push(OpsetImport {
                domain: domain.into(),
                version: 1,
            });
        }
    }
    report
}

/// Rewrites `DQ(a), DQ(b) → Add → Q` with per-tensor parameters into `com.microsoft`
/// `QLinearAdd` (as onnxruntime does for residual connections). Returns the number of
/// Adds rewritten and the `QuantizeLinear` nodes to delete.
fn fuse_adds(
    g: &mut Graph,
    producer: &HashMap<String, usize>,
    only_consumer: &dyn Fn(&str) -> Option<usize>,
) -> (usize, Vec<usize>) {
    let mut edits = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if !n.domain.is_empty() || n.op_type != "Add" || n.inputs.len() != 2 || n.outputs.len() != 1
        {
            continue;
        }
        let per_tensor_const = |v: &str| g.initializer(v).is_some_and(|t| t.len() == 1);
        let dq = |v: &str| {
            producer
                .get(v)
                .map(|&p| &g.nodes[p])
                .filter(|d| {
                    d.op_type == "DequantizeLinear" && d.domain.is_empty() && d.inputs.len() >= 3
                })
                .filter(|d| per_tensor_const(&d.inputs[1]) && per_tensor_const(&d.inputs[2]))
        };
        let (Some(a), Some(b)) = (dq(&n.inputs[0]), dq(&n.inputs[1])) else {
            continue;
        };
        let Some(qi) = only_consumer(&n.outputs[0]) else {
            continue;
        };
        let q = &g.nodes[qi];
        if q.op_type != "QuantizeLinear"
            || !q.domain.is_empty()
            || q.inputs.len() < 3
            || q.outputs.len() != 1
            || !per_tensor_const(&q.inputs[1])
            || !per_tensor_const(&q.inputs[2])
        {
            continue;
        }
        // All three zero points must share one type (QLinearAdd has one T).
        let ty = |v: &str| g.initializer(v).map(Tensor::dtype);
        if ty(&a.inputs[2]) != ty(&q.inputs[2]) || ty(&b.inputs[2]) != ty(&q.inputs[2]) {
            continue;
        }
        let mut node = fused_node(
            &n.name,
            "QLinearAdd",
            "com.microsoft",
            [&a.inputs[..3], &b.inputs[..3], &q.inputs[1..3]].concat(),
            Vec::new(),
        );
        node.outputs = q.outputs.clone();
        edits.push((i, node, qi));
    }
    let mut dead = Vec::new();
    let count = edits.len();
    for (i, node, qi) in edits {
        g.nodes[i] = node;
        dead.push(qi);
    }
    (count, dead)
}

/// Removes `DequantizeLinear` nodes whose outputs nothing reads any more.
fn remove_dead_dq(g: &mut Graph) -> usize {
    let mut removed = 0;
    loop {
        let read: HashSet<String> = g
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().cloned())
            .chain(g.outputs.iter().map(|o| o.name.clone()))
            .collect();
        let before = g.nodes.len();
        g.nodes.retain(|n| {
            !(n.op_type == "DequantizeLinear"
                && n.domain.is_empty()
                && n.outputs.iter().all(|o| !read.contains(o)))
        });
        let r = before - g.nodes.len();
        if r == 0 {
            return removed;
        }
        removed += r;
    }
}

/// A fused node (its outputs are set by the caller).
fn fused_node(
    name: &str,
    op_type: &str,
    domain: &str,
    inputs: Vec<String>,
    attributes: Vec<(String, Attribute)>,
) -> Node {
    Node {
        name: name.to_owned(),
        op_type: op_type.to_owned(),
        domain: domain.to_owned(),
        inputs,
        outputs: Vec::new(),
        attributes,
        doc_string: String::new(),
    }
}

fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    match n.attr(name) {
        Some(Attribute::Int(v)) => *v,
        _ => default,
    }
}

fn float_attr(n: &Node, name: &str, default: f32) -> f32 {
    match n.attr(name) {
        Some(Attribute::Float(v)) => *v,
        _ => default,
    }
}

fn f32s(t: &Tensor) -> Option<Vec<f32>> {
    match t {
        Tensor::F32(a) => Some(a.iter().copied().collect()),
        _ => None,
    }
}

/// The names and constant values of one QDQ group.
struct Group {
    x: [String; 3],
    w: [String; 3],
    y: [String; 2],
    x_scale: f32,
    w_scales: Vec<f32>,
    /// The weight DQ's axis when per-channel.
    w_axis: Option<i64>,
    w_rank: usize,
}

impl Group {
    fn new(g: &Graph, _op: &Node, xdq: &Node, wdq: &Node, q: &Node) -> Option<Group> {
        let init = |v: &str| g.initializer(v);
        let xs = f32s(init(&xdq.inputs[1])?)?;
        let ws = f32s(init(&wdq.inputs[1])?)?;
        let ys = f32s(init(&q.inputs[1])?)?;
        let zp_ok = |n: &Node| {
            n.inputs
                .get(2)
                .is_some_and(|z| !z.is_empty() && init(z).is_some_and(|t| t.len() == 1))
        };
        if xs.len() != 1
            || ys.len() != 1
            || !zp_ok(xdq)
            || !zp_ok(q)
            || int_attr(q, "block_size", 0) != 0
        {
            return None;
        }
        let wq = init(&wdq.inputs[0])?;
        let wzp = wdq.inputs.get(2).filter(|z| !z.is_empty());
        if let Some(z) = wzp {
            init(z)?;
        }
        let w_axis = (ws.len() > 1).then(|| int_attr(wdq, "axis", 1));
        Some(Group {
            x: [
                xdq.inputs[0].clone(),
                xdq.inputs[1].clone(),
                xdq.inputs[2].clone(),
            ],
            w: [
                wdq.inputs[0].clone(),
                wdq.inputs[1].clone(),
                wzp.cloned().unwrap_or_default(),
            ],
            y: [q.inputs[1].clone(), q.inputs[2].clone()],
            x_scale: xs[0],
            w_scales: ws,
            w_axis,
            w_rank: wq.shape().len(),
        })
    }

    /// Whether the weight quantization is per-tensor or along `axis` (the output
    /// channels).
    fn w_axis_is(&self, axis: usize) -> bool {
        match self.w_axis {
            None => true,
            Some(a) => {
                let r = self.w_rank as i64;
                (if a < 0 { a + r } else { a }) == axis as i64
            }
        }
    }

    /// The int32 bias input for `bias` (a DQ'd int32 with the right scale, or a float
    /// initializer quantized here), or `None` if the group cannot be fused exactly.
    fn bias(
        &self,
        g: &Graph,
        bias: &str,
        name: &str,
        new: &mut Vec<(String, Tensor)>,
    ) -> Option<String> {
        let prod = g.nodes.iter().find(|n| n.outputs.iter().any(|o| o == bias));
        let expect =
            |c: usize| self.x_scale * self.w_scales[if self.w_scales.len() == 1 { 0 } else { c }];
        if let Some(dq) = prod {
            if dq.op_type != "DequantizeLinear" || !dq.domain.is_empty() {
                return None;
            }
            let Tensor::I32(_) = g.initializer(&dq.inputs[0])? else {
                return None;
            };
            let bs = f32s(g.initializer(dq.inputs.get(1)?)?)?;
            let zp = dq.inputs.get(2).filter(|z| !z.is_empty());
            if let Some(z) = zp
                && !matches!(g.initializer(z)?, Tensor::I32(a) if a.iter().all(|&v| v == 0))
            {
                return None;
            }
            let ok = bs.iter().enumerate().all(|(c, &s)| {
                let e = expect(if bs.len() == 1 { 0 } else { c });
                (s - e).abs() <= 1e-6 * e.abs()
            });
            return ok.then(|| dq.inputs[0].clone());
        }
        let b = f32s(g.initializer(bias)?)?;
        if self.w_scales.len() != 1 && self.w_scales.len() != b.len() {
            return None;
        }
        let mut q = Vec::with_capacity(b.len());
        for (c, &v) in b.iter().enumerate() {
            let r = (f64::from(v) / f64::from(expect(c))).round_ties_even();
            if !(r.is_finite() && r.abs() < f64::from(i32::MAX)) {
                return None;
            }
            q.push(r as i32);
        }
        let name = format!("{name}__edgeml_bias_i32");
        new.push((
            name.clone(),
            Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[q.len()]), q).ok()?),
        ));
        Some(name)
    }

    /// The operands every fused operator starts with: x, x_scale, x_zero_point, w,
    /// w_scale, w_zero_point, y_scale, y_zero_point.
    fn operands(&self) -> Vec<String> {
        [&self.x[..], &self.w[..], &self.y[..]].concat()
    }

    fn conv(
        &self,
        g: &Graph,
        conv: &Node,
        relu: bool,
        new: &mut Vec<(String, Tensor)>,
    ) -> Option<Node> {
        if !self.w_axis_is(0) || self.w[2].is_empty() {
            return None;
        }
        let mut inputs = self.operands();
        if let Some(b) = conv.inputs.get(2).filter(|b| !b.is_empty()) {
            inputs.push(self.bias(g, b, &conv.outputs[0], new)?);
        }
        let mut attributes = conv.attributes.clone();
        let domain = if relu {
            attributes.push(("activation".into(), Attribute::String(b"Relu".to_vec())));
            "com.edgeml"
        } else {
            ""
        };
        Some(fused_node(
            &conv.name,
            "QLinearConv",
            domain,
            inputs,
            attributes,
        ))
    }

    fn matmul(&self, mm: &Node) -> Option<Node> {
        if self.w_rank != 2 || !self.w_axis_is(1) || self.w[2].is_empty() {
            return None;
        }
        Some(fused_node(
            &mm.name,
            "QLinearMatMul",
            "",
            self.operands(),
            Vec::new(),
        ))
    }

    fn gemm(&self, g: &Graph, gemm: &Node, new: &mut Vec<(String, Tensor)>) -> Option<Node> {
        let trans_b = int_attr(gemm, "transB", 0) != 0;
        if self.w_rank != 2 || !self.w_axis_is(if trans_b { 0 } else { 1 }) || self.w[2].is_empty()
        {
            return None;
        }
        let alpha = float_attr(gemm, "alpha", 1.0);
        let beta = float_attr(gemm, "beta", 1.0);
        let mut c = String::new();
        if let Some(b) = gemm.inputs.get(2).filter(|b| !b.is_empty()) {
            // The int32 bias is added to the accumulator, whose scale includes alpha.
            if beta != 1.0 || alpha != 1.0 {
                return None;
            }
            c = self.bias(g, b, &gemm.outputs[0], new)?;
        }
        let mut inputs = self.operands();
        inputs.insert(6, c);
        let attributes = vec![
            ("alpha".into(), Attribute::Float(alpha)),
            ("transA".into(), Attribute::Int(int_attr(gemm, "transA", 0))),
            ("transB".into(), Attribute::Int(i64::from(trans_b))),
        ];
        Some(fused_node(
            &gemm.name,
            "QGemm",
            "com.microsoft",
            inputs,
            attributes,
        ))
    }
}
