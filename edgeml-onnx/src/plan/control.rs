//! Control flow: `If` and `Loop` with real subgraph execution.
//!
//! A subgraph reads outer-scope values by name. At plan time the names it reads are
//! split into constants (copied into the subgraph's plan, so they fold there too) and
//! run-time values, which the outer step passes after the node's own inputs.
//! An `If` whose condition is a plan-time constant is replaced by its branch.

use super::budget::{RunState, bytes_of, within};
use super::build::{Builder, Scope, build_sub, free_vars};
use super::program::Program;
use crate::ops::attr::{Attrs, describe};
use crate::ops::util::check_size;
use crate::{Error, Graph, Node, Operator, Result, Tensor};
use edgeml_core::DType;
use ndarray::{ArrayD, Axis, IxDyn};

pub(super) fn plan_control(
    b: &mut Builder<'_>,
    node: &Node,
    scope: &mut Scope,
    in_slots: Vec<Option<usize>>,
    _opset: i64,
) -> Result<()> {
    let attrs = Attrs::new(node);
    let graphs: Vec<&Graph> = match node.op_type.as_str() {
        "If" => vec![attrs.graph("then_branch")?, attrs.graph("else_branch")?],
        _ => vec![attrs.graph("body")?],
    };
    if node.op_type == "If" {
        validate_if(node, graphs[0], graphs[1])?;
    } else {
        let carried_types: Vec<Option<DType>> = in_slots
            .iter()
            .skip(2)
            .map(|s| s.and_then(|s| b.type_of(s)).and_then(|t| t.dtype))
            .collect();
        validate_loop(node, graphs[0], &carried_types)?;
    }
    if node.op_type == "If" {
        let cond_slot =
            in_slots.first().copied().flatten().ok_or_else(|| {
                Error::InvalidModel(format!("{}: missing condition", describe(node)))
            })?;
        if let (true, Some(c)) = (b.ctx.fold, b.const_of(cond_slot)) {
            let take_then = truth(node, c)?;
            let branch = graphs[if take_then { 0 } else { 1 }];
            return inline_branch(b, node, scope, branch);
        }
    }
    // Outer names the subgraphs read: constants go in, the rest become extra inputs.
    let mut names: Vec<String> = Vec::new();
    for g in &graphs {
        for n in free_vars(g) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let mut captures = Vec::new();
    let mut cap_slots = Vec::new();
    let mut consts = Vec::new();
    for n in names {
        let slot = scope.get(&n).copied().ok_or_else(|| {
            Error::InvalidModel(format!(
                "{}: a subgraph reads {n:?}, which is not defined in the enclosing scope",
                describe(node)
            ))
        })?;
        match b.const_of(slot) {
            Some(c) => consts.push((n, c.clone())),
            None => {
                captures.push(n);
                cap_slots.push(Some(slot));
            }
        }
    }
    let op: Box<dyn Operator> = if node.op_type == "If" {
        let then_p = build_sub(b.ctx, graphs[0], &captures, &consts)?;
        let else_p = build_sub(b.ctx, graphs[1], &captures, &consts)?;
        Box::new(IfOp {
            desc: describe(node),
            then_p,
            else_p,
        })
    } else {
        let body = graphs[0];
        // Counts checked by `validate_loop`.
        let n_carried = node.inputs.len() - 2;
        let n_scan = body.outputs.len() - 1 - n_carried;
        let scan_dtypes = body.outputs[1 + n_carried..]
            .iter()
            .map(|o| o.dtype.unwrap_or(edgeml_core::DType::F32))
            .collect();
        Box::new(LoopOp {
            desc: describe(node),
            body: build_sub(b.ctx, body, &captures, &consts)?,
            n_carried,
            n_scan,
            scan_dtypes,
        })
    };
    let mut inputs = in_slots;
    inputs.extend(cap_slots);
    let outs = b.output_slots(node, scope, None)?;
    b.push_step(node, op, inputs, outs);
    Ok(())
}

/// Checks, before anything runs, that both branches of an `If` give as many outputs as
/// the node has and agree on their element types where both declare one (ONNX type
/// inference requires it; otherwise a mismatch would only surface at run time).
fn validate_if(node: &Node, then_g: &Graph, else_g: &Graph) -> Result<()> {
    for (which, g) in [("then_branch", then_g), ("else_branch", else_g)] {
        if g.outputs.len() != node.outputs.len() {
            return Err(Error::InvalidModel(format!(
                "{}: {which} has {} outputs, the node has {}",
                describe(node),
                g.outputs.len(),
                node.outputs.len()
            )));
        }
    }
    for (k, (t, e)) in then_g.outputs.iter().zip(&else_g.outputs).enumerate() {
        if let (Some(a), Some(b)) = (t.dtype, e.dtype)
            && a != b
        {
            return Err(Error::InvalidModel(format!(
                "{}: output {k} is {a:?} in then_branch ({:?}) but {b:?} in else_branch ({:?})",
                describe(node),
                t.name,
                e.name
            )));
        }
    }
    Ok(())
}

/// Checks a `Loop` body against the node: input and output counts, the iteration
/// number (`int64`) and condition (`bool`) types, and each loop-carried value's type
/// where the node input, the body input and the body output declare one.
fn validate_loop(node: &Node, body: &Graph, carried: &[Option<DType>]) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidModel(format!("{}: {m}", describe(node))));
    if node.inputs.len() < 2 {
        return bad("Loop needs inputs M and cond (possibly empty names)".into());
    }
    let n_carried = node.inputs.len() - 2;
    if body.inputs.len() != n_carried + 2 || body.outputs.len() < n_carried + 1 {
        return bad(format!(
            "the body has {} inputs and {} outputs; with {n_carried} loop-carried values it \
             needs {} inputs and at least {} outputs",
            body.inputs.len(),
            body.outputs.len(),
            n_carried + 2,
            n_carried + 1
        ));
    }
    let n_scan = body.outputs.len() - 1 - n_carried;
    if node.outputs.len() > n_carried + n_scan {
        return bad(format!(
            "the node has {} outputs, but the body gives {n_carried} loop-carried and \
             {n_scan} scan outputs",
            node.outputs.len()
        ));
    }
    let expect = |what: &str, v: &crate::ValueInfo, want: DType| match v.dtype {
        Some(d) if d != want => bad(format!(
            "the body's {what} {:?} is {d:?}, not {want:?}",
            v.name
        )),
        _ => Ok(()),
    };
    expect("iteration-number input", &body.inputs[0], DType::I64)?;
    expect("condition input", &body.inputs[1], DType::Bool)?;
    expect("condition output", &body.outputs[0], DType::Bool)?;
    for k in 0..n_carried {
        let (i, o) = (&body.inputs[2 + k], &body.outputs[1 + k]);
        let given = carried.get(k).copied().flatten();
        for (what, v) in [("input", i.dtype), ("output", o.dtype)] {
            if let (Some(g), Some(v)) = (given, v)
                && g != v
            {
                return bad(format!(
                    "loop-carried value {k} is {g:?} ({:?}), but the body's {what} declares {v:?}",
                    node.inputs[2 + k]
                ));
            }
        }
        if let (Some(a), Some(b)) = (i.dtype, o.dtype)
            && a != b
        {
            return bad(format!(
                "loop-carried value {k}: the body reads {a:?} ({:?}) but returns {b:?} ({:?})",
                i.name, o.name
            ));
        }
    }
    Ok(())
}

/// Plans `branch`'s nodes in place of the `If` node.
fn inline_branch(
    b: &mut Builder<'_>,
    node: &Node,
    scope: &mut Scope,
    branch: &Graph,
) -> Result<()> {
    let mut inner = scope.clone();
    b.plan_graph(branch, &mut inner)?;
    for (k, out) in node.outputs.iter().enumerate() {
        if out.is_empty() {
            continue;
        }
        let src = branch.outputs.get(k).ok_or_else(|| {
            Error::InvalidModel(format!(
                "{}: the branch taken has no output {k}",
                describe(node)
            ))
        })?;
        let slot = inner.get(&src.name).copied().ok_or_else(|| {
            Error::InvalidModel(format!(
                "{}: branch output {:?} is not produced",
                describe(node),
                src.name
            ))
        })?;
        scope.insert(out.clone(), slot);
    }
    Ok(())
}

fn truth(node: &Node, t: &Tensor) -> Result<bool> {
    match t {
        Tensor::Bool(a) if a.len() == 1 => Ok(a.iter().next().copied().unwrap_or(false)),
        _ => Err(Error::InvalidInput(format!(
            "{}: the condition must be a single bool, found {:?} {:?}",
            describe(node),
            t.dtype(),
            t.shape()
        ))),
    }
}

#[derive(Debug)]
struct IfOp {
    desc: String,
    then_p: Program,
    else_p: Program,
}

impl Operator for IfOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let cond = inputs
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| Error::InvalidInput(format!("{}: missing condition", self.desc)))?;
        let c = match cond {
            Tensor::Bool(a) if a.len() == 1 => a.iter().next().copied().unwrap_or(false),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "{}: the condition must be a single bool, found {:?} {:?}",
                    self.desc,
                    cond.dtype(),
                    cond.shape()
                )));
            }
        };
        let caps = captured(&self.desc, &inputs[1..])?;
        let p = if c { &self.then_p } else { &self.else_p };
        p.run(&caps, &mut |_, _| {}, &super::budget::current())
            .map_err(|e| {
                within(e, &|| {
                    format!("{}, {} branch", self.desc, if c { "then" } else { "else" })
                })
            })
    }
}

fn captured<'a>(desc: &str, inputs: &[Option<&'a Tensor>]) -> Result<Vec<&'a Tensor>> {
    inputs
        .iter()
        .map(|t| {
            t.ok_or_else(|| Error::InvalidModel(format!("{desc}: an outer-scope value is missing")))
        })
        .collect()
}

#[derive(Debug)]
struct LoopOp {
    desc: String,
    body: Program,
    n_carried: usize,
    n_scan: usize,
    scan_dtypes: Vec<edgeml_core::DType>,
}

impl Operator for LoopOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let err = |m: String| Error::InvalidInput(format!("{}: {m}", self.desc));
        let max_trip = match inputs.first().copied().flatten() {
            None => None,
            Some(Tensor::I64(a)) if a.len() == 1 => a.iter().next().copied(),
            Some(t) => {
                return Err(err(format!(
                    "M must be a single int64, found {:?}",
                    t.dtype()
                )));
            }
        };
        let mut cond = match inputs.get(1).copied().flatten() {
            None => true,
            Some(Tensor::Bool(a)) if a.len() == 1 => a.iter().next().copied().unwrap_or(false),
            Some(t) => {
                return Err(err(format!(
                    "cond must be a single bool, found {:?}",
                    t.dtype()
                )));
            }
        };
        if max_trip.is_none() && inputs.get(1).copied().flatten().is_none() {
            return Err(err("Loop without M and cond would never stop".into()));
        }
        // A negative M runs no iteration; the run's limits bound the rest.
        let limit = max_trip.map_or(u64::MAX, |m| u64::try_from(m).unwrap_or(0));
        let state = super::budget::current();
        let end = 2 + self.n_carried;
        let mut carried: Vec<Tensor> = inputs
            .get(2..end)
            .ok_or_else(|| err("missing loop-carried inputs".into()))?
            .iter()
            .map(|t| {
                t.cloned()
                    .ok_or_else(|| err("a loop-carried input is omitted".into()))
            })
            .collect::<Result<_>>()?;
        let caps = captured(&self.desc, &inputs[end..])?;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); self.n_scan];
        // Bytes of the loop state and scan outputs held here, charged to the run.
        let mut held: u64 = carried.iter().map(bytes_of).sum();
        state.charge(held, &self.desc)?;
        let r = self.iterate(
            &state,
            limit,
            &mut cond,
            &mut carried,
            &caps,
            &mut scans,
            &mut held,
        );
        state.release(held);
        r?;
        let mut result = carried;
        for (k, s) in scans.into_iter().enumerate() {
            result.push(stack(&self.desc, s, self.scan_dtypes[k])?);
        }
        Ok(result)
    }
}

impl LoopOp {
    /// Runs the iterations; `held` tracks the bytes charged for `carried` and `scans`.
    #[allow(clippy::too_many_arguments)]
    fn iterate(
        &self,
        state: &RunState,
        limit: u64,
        cond: &mut bool,
        carried: &mut Vec<Tensor>,
        caps: &[&Tensor],
        scans: &mut [Vec<Tensor>],
        held: &mut u64,
    ) -> Result<()> {
        let err = |m: String| Error::InvalidInput(format!("{}: {m}", self.desc));
        let mut i = 0u64;
        while i < limit && *cond {
            state.count_iteration(&self.desc, i)?;
            let iter_t = Tensor::I64(ArrayD::from_elem(
                IxDyn(&[]),
                i64::try_from(i).unwrap_or(i64::MAX),
            ));
            let cond_t = Tensor::Bool(ArrayD::from_elem(IxDyn(&[]), *cond));
            let mut args: Vec<&Tensor> = vec![&iter_t, &cond_t];
            args.extend(carried.iter());
            args.extend(caps.iter().copied());
            let mut outs = self
                .body
                .run(&args, &mut |_, _| {}, state)
                .map_err(|e| within(e, &|| format!("{}, iteration {i}", self.desc)))?
                .into_iter();
            *cond = match outs.next() {
                Some(Tensor::Bool(a)) if a.len() == 1 => a.iter().next().copied().unwrap_or(false),
                _ => {
                    return Err(err(
                        "the body's condition output must be a single bool".into()
                    ));
                }
            };
            let old: u64 = carried.iter().map(bytes_of).sum();
            *carried = outs.by_ref().take(self.n_carried).collect();
            let new: u64 = carried.iter().map(bytes_of).sum();
            state.release(old);
            *held = held.saturating_sub(old);
            state.charge(new, &self.desc)?;
            *held += new;
            for (s, t) in scans.iter_mut().zip(outs) {
                let b = bytes_of(&t);
                state.charge(b, &self.desc)?;
                *held += b;
                s.push(t);
            }
            i += 1;
        }
        Ok(())
    }
}

/// Stacks per-iteration tensors along a new leading axis.
fn stack(desc: &str, parts: Vec<Tensor>, dtype: edgeml_core::DType) -> Result<Tensor> {
    let Some(first) = parts.first() else {
        return crate::with_dtype!(dtype, T => Ok(<T as crate::ops::util::Elem>::wrap(
            ArrayD::<T>::default(IxDyn(&[0])))));
    };
    let mut shape = vec![parts.len()];
    shape.extend_from_slice(first.shape());
    let node = Node {
        op_type: "Loop".into(),
        ..Node::default()
    };
    check_size(&node, &shape)?;
    crate::with_dtype!(first.dtype(), T => {
        let views = parts
            .iter()
            .map(|t| {
                <T as crate::ops::util::Elem>::get(t)
                    .filter(|a| a.shape() == first.shape())
                    .map(|a| a.view().insert_axis(Axis(0)))
                    .ok_or_else(|| Error::ShapeMismatch(format!(
                        "{desc}: scan outputs differ in type or shape across iterations"
                    )))
            })
            .collect::<Result<Vec<_>>>()?;
        let a = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::ShapeMismatch(format!("{desc}: {e}")))?;
        Ok(<T as crate::ops::util::Elem>::wrap(a))
    })
}
