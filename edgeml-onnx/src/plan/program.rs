//! A planned (sub)graph: slots, constants and the steps that fill them.

use super::budget::{RunState, at_step, bytes_of};
use crate::{Error, Operator, Result, Tensor};
use std::sync::Arc;

/// One operator invocation.
#[derive(Debug)]
pub(crate) struct Step {
    /// The operator.
    pub(crate) op: Box<dyn Operator>,
    /// Input slots (`None` for an omitted optional input).
    pub(crate) inputs: Vec<Option<usize>>,
    /// Output slots (`None` for an omitted output).
    pub(crate) outputs: Vec<Option<usize>>,
    /// Slots to drop once this step has run (their last use).
    pub(crate) free: Vec<usize>,
    /// For messages: the node.
    pub(crate) desc: String,
    /// Bytes of the step's outputs when the plan knows their types and shapes exactly
    /// (0 when it does not): checked against the live-memory limit before the step runs.
    pub(crate) out_bytes: u64,
}

/// A value during a run: borrowed (input or constant) or owned (computed).
enum Val<'a> {
    Ref(&'a Tensor),
    Own(Tensor),
}

impl Val<'_> {
    fn get(&self) -> &Tensor {
        match self {
            Val::Ref(t) => t,
            Val::Own(t) => t,
        }
    }
}

/// A planned graph.
#[derive(Debug, Default)]
pub(crate) struct Program {
    /// Slot names (for observers and messages).
    pub(crate) names: Vec<String>,
    /// Constant value of each slot, if it is a constant.
    pub(crate) consts: Vec<Option<Arc<Tensor>>>,
    /// Slots of the inputs, in the order `run` receives them.
    pub(crate) inputs: Vec<usize>,
    /// Output names and slots.
    pub(crate) outputs: Vec<(String, usize)>,
    /// The steps, in execution order.
    pub(crate) steps: Vec<Step>,
    /// Element type and shape of each named value as known at plan time (declared or
    /// inferred by [`crate::shapes`]).
    pub(crate) types: std::collections::HashMap<String, crate::InputType>,
}

impl Program {
    /// Elements of the constants the steps read.
    pub(crate) fn const_elems(&self) -> usize {
        let mut seen = vec![false; self.consts.len()];
        let mut n = 0usize;
        for s in self.steps.iter().flat_map(|s| s.inputs.iter().flatten()) {
            if let (false, Some(c)) = (seen[*s], &self.consts[*s]) {
                seen[*s] = true;
                n = n.saturating_add(c.len());
            }
        }
        n
    }

    pub(crate) fn num_steps(&self) -> usize {
        self.steps.len()
    }

    pub(crate) fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Computes each step's `free` list from last uses. Outputs are never freed.
    pub(crate) fn compute_liveness(&mut self) {
        let n = self.names.len();
        let mut last: Vec<Option<usize>> = vec![None; n];
        for (i, s) in self.steps.iter().enumerate() {
            for &slot in s.inputs.iter().flatten() {
                last[slot] = Some(i);
            }
        }
        for (_, slot) in &self.outputs {
            last[*slot] = None;
        }
        for s in &mut self.steps {
            s.free.clear();
        }
        for (slot, l) in last.into_iter().enumerate() {
            if let Some(i) = l
                && self.consts[slot].is_none()
            {
                self.steps[i].free.push(slot);
            }
        }
    }

    /// Runs the program on inputs given in the order of `self.inputs`, within the
    /// budget of `state` (checked before every step; every value a step makes is charged
    /// to the run's live memory until it is freed or returned).
    pub(crate) fn run(
        &self,
        inputs: &[&Tensor],
        observer: &mut (dyn FnMut(&str, &Tensor) + Send),
        state: &RunState,
    ) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::InvalidInput(format!(
                "expected {} inputs, got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let profile = profiling();
        let mut env: Vec<Option<Val<'_>>> = self
            .consts
            .iter()
            .map(|c| c.as_deref().map(Val::Ref))
            .collect();
        for (&slot, &t) in self.inputs.iter().zip(inputs) {
            env[slot] = Some(Val::Ref(t));
        }
        for step in &self.steps {
            state.check(&|| step.desc.clone())?;
            if step.out_bytes > 0 {
                state.precheck(step.out_bytes, &step.desc)?;
            }
            // Input 0 goes by value to an operator that can reuse its memory, when this
            // step is its last use and the interpreter owns it (not an input/constant).
            let first = match step.inputs.first() {
                Some(Some(s0))
                    if step.op.consumes_first_input()
                        && step.free.contains(s0)
                        && !step.inputs[1..].contains(&Some(*s0))
                        && matches!(env[*s0], Some(Val::Own(_))) =>
                {
                    match env[*s0].take() {
                        Some(Val::Own(t)) => {
                            state.release(bytes_of(&t));
                            Some(t)
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let skip = usize::from(first.is_some());
            let args: Vec<Option<&Tensor>> = step.inputs[skip..]
                .iter()
                .map(|s| match s {
                    None => Ok(None),
                    Some(s) => env[*s].as_ref().map(|v| Some(v.get())).ok_or_else(|| {
                        Error::InvalidModel(format!(
                            "{}: value {:?} is not available (internal planning error)",
                            step.desc, self.names[*s]
                        ))
                    }),
                })
                .collect::<Result<_>>()?;
            let t0 = profile.then(std::time::Instant::now);
            let outs = match first {
                Some(t) => crate::op::run_guarded_consuming(&*step.op, t, &args, &step.desc),
                None => crate::op::run_guarded(&*step.op, &args, &step.desc),
            }
            .map_err(|e| at_step(e, &step.desc))?;
            if let Some(t0) = t0 {
                eprintln!("edgeml-profile\t{}\t{}", step.desc, t0.elapsed().as_nanos());
            }
            drop(args);
            // Extra outputs (optional ones the node does not name) are dropped.
            for (t, slot) in outs.into_iter().zip(&step.outputs) {
                if let Some(slot) = slot {
                    state.charge(bytes_of(&t), &step.desc)?;
                    observer(&self.names[*slot], &t);
                    env[*slot] = Some(Val::Own(t));
                }
            }
            for &f in &step.free {
                // Freed f32 blocks go back to this thread's buffer pool (see
                // `crate::buffers`), so the next operator or run reuses warm memory.
                if let Some(Val::Own(t)) = env[f].take() {
                    state.release(bytes_of(&t));
                    crate::buffers::recycle(t);
                }
            }
        }
        let mut outs = Vec::with_capacity(self.outputs.len());
        for (k, (name, slot)) in self.outputs.iter().enumerate() {
            let again = self.outputs[k + 1..].iter().any(|(_, s)| s == slot);
            let t = match (&env[*slot], again) {
                (None, _) => {
                    return Err(Error::InvalidModel(format!(
                        "graph output {name:?} was not produced \
                         (a node left an optional output empty)"
                    )));
                }
                (Some(Val::Own(_)), false) => match env[*slot].take() {
                    Some(Val::Own(t)) => {
                        // Returned: the caller (or the enclosing step) accounts for it.
                        state.release(bytes_of(&t));
                        t
                    }
                    _ => unreachable_output(name)?,
                },
                (Some(v), _) => v.get().clone(),
            };
            outs.push(t);
        }
        Ok(outs)
    }
}

/// Whether `EDGEML_PROFILE` is set (read once per process): every step then prints
/// `edgeml-profile<TAB>op "node"<TAB>nanoseconds` to stderr, a debugging aid for finding
/// where a model's time goes (`scripts/profile_ops.py` summarises it).
fn profiling() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EDGEML_PROFILE").is_some_and(|v| v != "0"))
}

fn unreachable_output(name: &str) -> Result<Tensor> {
    Err(Error::InvalidModel(format!(
        "graph output {name:?} vanished"
    )))
}
