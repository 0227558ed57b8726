//! A structure-aware generator of small valid graphs for the run fuzzer (issue 19):
//! bytes choose operators from a menu, their operands among the values built so far,
//! attributes and loop trip counts (hostile ones included), so that almost every input
//! plans and runs. Shared by `fuzz/fuzz_targets/run.rs` (cargo-fuzz, nightly) and
//! `tests/run_fuzz.rs` (proptest, stable, in CI); both check [`check_bounded`].
//!
//! The bytes are decoded here rather than through `arbitrary::Unstructured` so that the
//! stable test needs no new dependency; the decoding is the same idea (exhausted input
//! reads as zeros, every choice is `byte % n`).
#![allow(dead_code)]

use edgeml_core::{DType, ErrorKind};
use edgeml_onnx::{
    Attribute, Dim, Graph, Model, Node, OpsetImport, Plan, PlanOptions, RunLimits, RunOptions,
    Tensor, ValueInfo,
};
use ndarray::ArrayD;
use std::time::Duration;

/// Reads choices from fuzzer bytes.
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::from(self.byte()) % n
        }
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn small_f32(&mut self) -> f32 {
        (f32::from(self.byte()) - 128.0) / 32.0
    }
}

/// A generated model and inputs for it.
pub(crate) struct Generated {
    pub(crate) model: Model,
    pub(crate) inputs: Vec<(String, Tensor)>,
}

struct Builder {
    nodes: Vec<Node>,
    inits: Vec<(String, Tensor)>,
    /// f32 values built so far and their shapes.
    values: Vec<(String, Vec<usize>)>,
    next: usize,
}

impl Builder {
    fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}{}", self.next)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(String, Attribute)>) -> String {
        let out = self.fresh("v");
        let name = self.fresh(&format!("{op}_"));
        self.nodes.push(Node {
            name,
            op_type: op.into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: vec![out.clone()],
            attributes: attrs,
            ..Default::default()
        });
        out
    }

    fn init(&mut self, t: Tensor) -> String {
        let n = self.fresh("c");
        self.inits.push((n.clone(), t));
        n
    }

    fn pick(&mut self, b: &mut Bytes<'_>) -> (String, Vec<usize>) {
        let i = b.below(self.values.len());
        self.values[i].clone()
    }
}

fn f32_tensor(shape: &[usize], b: &mut Bytes<'_>) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| b.small_f32()).collect();
    Tensor::F32(ArrayD::from_shape_vec(shape.to_vec(), v).expect("shape matches"))
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).expect("1-d"))
}

fn vi(name: &str, shape: Option<&[usize]>, dtype: DType) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        dtype: Some(dtype),
        shape: shape.map(|s| s.iter().map(|&d| Dim::Known(d)).collect()),
        ..Default::default()
    }
}

const TRIPS: [i64; 6] = [0, 1, 3, 7, 1_000_000_000_000_000, -2];

/// A `Loop` carrying `x` and adding `y` (same shape, from the outer scope)
/// each iteration; its trip count is constant or absent (then the condition stays true).
fn add_loop(g: &mut Builder, b: &mut Bytes<'_>, x: &str, y: &str) -> String {
    let p = g.fresh("L");
    let body = Graph {
        name: format!("{p}_body"),
        nodes: vec![
            Node {
                op_type: "Identity".into(),
                inputs: vec![format!("{p}_c")],
                outputs: vec![format!("{p}_co")],
                ..Default::default()
            },
            Node {
                op_type: "Add".into(),
                inputs: vec![format!("{p}_x"), y.to_owned()],
                outputs: vec![format!("{p}_xo")],
                ..Default::default()
            },
        ],
        inputs: vec![
            vi(&format!("{p}_i"), Some(&[]), DType::I64),
            vi(&format!("{p}_c"), Some(&[]), DType::Bool),
            vi(&format!("{p}_x"), None, DType::F32),
        ],
        outputs: vec![
            vi(&format!("{p}_co"), Some(&[]), DType::Bool),
            vi(&format!("{p}_xo"), None, DType::F32),
        ],
        ..Default::default()
    };
    let trip = TRIPS[b.below(TRIPS.len())];
    let m = if b.below(4) == 0 {
        String::new()
    } else {
        g.init(Tensor::I64(ArrayD::from_elem(vec![], trip)))
    };
    let cond = g.init(Tensor::Bool(ArrayD::from_elem(vec![], true)));
    g.node(
        "Loop",
        &[&m, &cond, x],
        vec![("body".into(), Attribute::Graph(Box::new(body)))],
    )
}

/// Builds a model from `data`.
pub(crate) fn generate(data: &[u8]) -> Generated {
    let mut b = Bytes::new(data);
    let mut g = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        values: Vec::new(),
        next: 0,
    };
    let rank = 1 + b.below(3);
    let shape: Vec<usize> = (0..rank).map(|_| 1 + b.below(4)).collect();
    let mut inputs = Vec::new();
    let mut graph_inputs = Vec::new();
    for k in 0..1 + b.below(2) {
        let name = format!("x{k}");
        inputs.push((name.clone(), f32_tensor(&shape, &mut b)));
        graph_inputs.push(vi(&name, Some(&shape), DType::F32));
        g.values.push((name, shape.clone()));
    }
    if b.below(2) == 0 {
        let c = g.init(f32_tensor(&shape, &mut b));
        g.values.push((c, shape.clone()));
    }
    let steps = 1 + b.below(12);
    for _ in 0..steps {
        if b.exhausted() && !g.nodes.is_empty() {
            break;
        }
        let (x, s) = g.pick(&mut b);
        let made: Option<(String, Vec<usize>)> = match b.below(14) {
            0 => {
                let op = ["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Identity", "Exp"][b.below(7)];
                Some((g.node(op, &[&x], vec![]), s))
            }
            1 => {
                let same: Vec<(String, Vec<usize>)> =
                    g.values.iter().filter(|(_, t)| *t == s).cloned().collect();
                let y = same[b.below(same.len())].0.clone();
                let op = ["Add", "Sub", "Mul", "Div", "Max", "Min"][b.below(6)];
                Some((g.node(op, &[&x, &y], vec![]), s))
            }
            2 => {
                // Broadcast against a scalar constant.
                let c = g.init(Tensor::F32(ArrayD::from_elem(vec![], b.small_f32())));
                Some((g.node("Mul", &[&x, &c], vec![]), s))
            }
            3 => {
                let axis = b.below(s.len()) as i64;
                let attrs = vec![
                    ("axes".into(), Attribute::Ints(vec![axis])),
                    ("keepdims".into(), Attribute::Int(1)),
                ];
                let mut t = s.clone();
                t[axis as usize] = 1;
                Some((g.node("ReduceMean", &[&x], attrs), t))
            }
            4 => {
                let t: Vec<usize> = s.iter().rev().copied().collect();
                Some((g.node("Transpose", &[&x], vec![]), t))
            }
            5 => {
                let mut t = s.clone();
                t[0] *= 2;
                let attrs = vec![("axis".into(), Attribute::Int(0))];
                Some((g.node("Concat", &[&x, &x], attrs), t))
            }
            6 => {
                let shp = g.init(i64s(&[-1]));
                Some((
                    g.node("Reshape", &[&x, &shp], vec![]),
                    vec![s.iter().product()],
                ))
            }
            7 => {
                let axis = b.below(s.len()) as i64;
                let attrs = vec![("axis".into(), Attribute::Int(axis))];
                Some((g.node("Softmax", &[&x], attrs), s))
            }
            8 => {
                // A constant tensor of the value's shape, folded or not by the budget.
                let dims: Vec<i64> = s.iter().map(|&d| d as i64).collect();
                let shp = g.init(i64s(&dims));
                let attrs = vec![(
                    "value".into(),
                    Attribute::Tensor(Tensor::F32(ArrayD::from_elem(vec![1], b.small_f32()))),
                )];
                Some((g.node("ConstantOfShape", &[&shp], attrs), s))
            }
            9 => {
                // A huge constant folding bomb (left to run time by the fold budget,
                // refused by the memory limit before it allocates: 2^25 f32 and more
                // is over `fuzz_limits`' 64 MiB; a bomb just under the limit made a
                // run take over 5 s under AddressSanitizer, see `run_fuzz.rs`).
                let shp = g.init(i64s(&[1 << (25 + b.below(7))]));
                let big = g.node("ConstantOfShape", &[&shp], vec![]);
                let attrs = vec![("keepdims".into(), Attribute::Int(1))];
                Some((g.node("ReduceSum", &[&big], attrs), vec![1]))
            }
            10 => {
                let same: Vec<(String, Vec<usize>)> =
                    g.values.iter().filter(|(_, t)| *t == s).cloned().collect();
                let y = same[b.below(same.len())].0.clone();
                Some((add_loop(&mut g, &mut b, &x, &y), s))
            }
            11 => {
                let reps: Vec<i64> = s.iter().map(|_| 1 + b.below(2) as i64).collect();
                let t: Vec<usize> = s.iter().zip(&reps).map(|(&d, &r)| d * r as usize).collect();
                let r = g.init(i64s(&reps));
                Some((g.node("Tile", &[&x, &r], vec![]), t))
            }
            12 if s.len() == 2 => {
                let n = 1 + b.below(4);
                let w = g.init(f32_tensor(&[s[1], n], &mut b));
                Some((g.node("MatMul", &[&x, &w], vec![]), vec![s[0], n]))
            }
            _ => {
                // If on a runtime condition (sum of x > 0): Relu or Neg of x.
                let sum = g.node(
                    "ReduceSum",
                    &[&x],
                    vec![("keepdims".into(), Attribute::Int(0))],
                );
                let zero = g.init(Tensor::F32(ArrayD::from_elem(vec![], 0.0)));
                let c = g.node("Greater", &[&sum, &zero], vec![]);
                let branch = |op: &str, out: &str| Graph {
                    nodes: vec![Node {
                        op_type: op.into(),
                        inputs: vec![x.clone()],
                        outputs: vec![out.into()],
                        ..Default::default()
                    }],
                    outputs: vec![vi(out, None, DType::F32)],
                    ..Default::default()
                };
                let (t, e) = (g.fresh("then"), g.fresh("else"));
                let attrs = vec![
                    (
                        "then_branch".into(),
                        Attribute::Graph(Box::new(branch("Relu", &t))),
                    ),
                    (
                        "else_branch".into(),
                        Attribute::Graph(Box::new(branch("Neg", &e))),
                    ),
                ];
                Some((g.node("If", &[&c], attrs), s))
            }
        };
        if let Some(v) = made {
            g.values.push(v);
        }
    }
    let last = g.values.last().map(|v| v.0.clone()).unwrap_or_default();
    let mut outputs = vec![vi(&last, None, DType::F32)];
    let (other, _) = g.pick(&mut b);
    if other != last && !g.inits.iter().any(|(n, _)| *n == other) {
        outputs.push(vi(&other, None, DType::F32));
    }
    let graph = Graph {
        name: "generated".into(),
        nodes: g.nodes,
        inputs: graph_inputs,
        outputs,
        initializers: g.inits,
        ..Default::default()
    };
    Generated {
        model: Model {
            ir_version: 8,
            opset_imports: vec![OpsetImport {
                domain: String::new(),
                version: 17,
            }],
            graph,
            ..Default::default()
        },
        inputs,
    }
}

/// The limits the fuzzer plans with: small enough that every hostile choice of the
/// generator ends quickly.
pub(crate) fn fuzz_limits() -> RunLimits {
    RunLimits::default()
        .max_loop_iterations(10_000)
        .max_live_bytes(64 << 20)
        .max_fold_elements(1 << 16)
        .max_fold_time(Duration::from_secs(1))
}

/// Plans and runs `generated` within [`fuzz_limits`] and a 5 s deadline; panics (the fuzzer's
/// failure signal) on an internal error (a panic caught in an operator), when a run
/// that succeeded once gives different outputs the second time, or when a run that
/// reached its deadline kept computing for over [`SLACK`] of CPU time past it.
pub(crate) fn check_bounded(generated: &Generated) {
    let mut opts = PlanOptions::with_threads(1);
    opts.limits = fuzz_limits();
    let plan = match Plan::new(&generated.model, opts) {
        Ok(p) => p,
        Err(e) => {
            assert_ne!(e.kind(), ErrorKind::Internal, "planning: {e}");
            return;
        }
    };
    let refs: Vec<(&str, &Tensor)> = generated
        .inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let deadline = Duration::from_secs(5);
    let run = || plan.run_with(&refs, &RunOptions::new().timeout(deadline));
    let cpu_before = process_cpu_time();
    match run() {
        Ok(first) => {
            let again = run().expect("a run that succeeded once succeeds again");
            assert_eq!(first.len(), again.len());
            for ((n, a), (_, b)) in first.iter().zip(&again) {
                assert_eq!(a.shape(), b.shape(), "{n}");
                assert_eq!(a.dtype(), b.dtype(), "{n}");
            }
        }
        Err(e) => {
            assert_ne!(e.kind(), ErrorKind::Internal, "running: {e}");
            if e.kind() == ErrorKind::DeadlineExceeded {
                // Reaching the deadline is an accepted outcome: within the limits a graph
                // can need more than 5 s of real work (10⁴ iterations of an `Add` over
                // 10⁵ elements under AddressSanitizer), and the deadline stopped it. A
                // finding is a run that kept computing long past it: more CPU time than
                // the deadline plus `SLACK` (CPU time, not wall time, so that a process
                // starved by a loaded machine is not a finding).
                let used = process_cpu_time()
                    .zip(cpu_before)
                    .map(|(after, before)| after.saturating_sub(before));
                if let Some(cpu) = used {
                    assert!(
                        cpu <= deadline + SLACK,
                        "the run computed for {cpu:?} of CPU time, past its {deadline:?} \
                         deadline by more than {SLACK:?}: {e}"
                    );
                }
            }
        }
    }
}

/// How long a run may keep computing past its deadline: a step the deadline does not
/// interrupt (most operators are checked only between steps) may write up to the
/// 64 MiB live limit, which under AddressSanitizer takes seconds (a chain of `Tile`s
/// to 8 Mi elements: 4.5 s past the deadline; 0.2 s for the whole run without ASan).
/// Well under libFuzzer's `-timeout=20`, which catches a run that never stops.
pub(crate) const SLACK: Duration = Duration::from_secs(10);

/// CPU time (user + system, all threads) this process has used so far, read from
/// `/proc/self/stat` (Linux; `None` elsewhere or when unreadable). The kernel reports
/// it in clock ticks of `USER_HZ`, which is 100 on every Linux ABI.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces, hence the last ')'):
    // state is field 3, utime field 14 and stime field 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}
