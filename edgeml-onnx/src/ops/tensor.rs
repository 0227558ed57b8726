//! Indexing and layout operators: `Concat`, `Split`, `Slice`, `Gather`, `Tile`, `Pad`,
//! `TopK`.

use super::num::Num;
use super::util::{Elem, check_size, input, slim, to_i64_vec};
use crate::ops::attr::{Attrs, describe, invalid, norm_axis};
use crate::{BuildContext, Error, Node, Operator, Registry, Result, Tensor, with_dtype, with_num};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

fn get<'t, T: Elem>(node: &Node, t: &'t Tensor, i: usize) -> Result<&'t ArrayD<T>> {
    T::get(t).ok_or_else(|| super::util::dtype_err(node, i, t.dtype(), &[T::DTYPE]))
}

#[derive(Debug)]
struct Concat {
    node: Node,
    axis: i64,
}

impl Operator for Concat {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let first = input(node, inputs, 0)?;
        let axis = norm_axis(node, self.axis, first.shape().len())?;
        let out = with_dtype!(first.dtype(), T => {
            let arrays = (0..inputs.len())
                .map(|i| get::<T>(node, input(node, inputs, i)?, i))
                .collect::<Result<Vec<&ArrayD<T>>>>()?;
            if let Some(a) = super::util::concat_contiguous(&arrays, axis) {
                return Ok(vec![T::wrap(a)]);
            }
            let views: Vec<ArrayViewD<'_, T>> = arrays.iter().map(|a| a.view()).collect();
            let a = ndarray::concatenate(Axis(axis), &views).map_err(|_| {
                let shapes: Vec<&[usize]> = views.iter().map(|v| v.shape()).collect();
                Error::ShapeMismatch(format!("{}: cannot concatenate {shapes:?} on axis {axis}", describe(node)))
            })?;
            Ok(T::wrap(a.as_standard_layout().into_owned()))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct Split {
    node: Node,
    axis: i64,
    split_attr: Option<Vec<i64>>,
    num_outputs: Option<i64>,
}

impl Operator for Split {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let axis = norm_axis(node, self.axis, t.shape().len())?;
        let dim = t.shape()[axis];
        let n_out = node.outputs.len().max(1);
        let sizes: Vec<usize> = match (&self.split_attr, inputs.get(1).copied().flatten()) {
            (Some(s), _) => super::util::to_dims(node, s)?,
            (None, Some(s)) => super::util::to_dims(node, &to_i64_vec(node, s)?)?,
            (None, None) => {
                let n = self.num_outputs.map_or(n_out, |n| n.max(1) as usize);
                let chunk = dim.div_ceil(n);
                (0..n)
                    .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                    .collect()
            }
        };
        if sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b)) != Some(dim) {
            return Err(Error::ShapeMismatch(format!(
                "{}: split sizes {sizes:?} do not sum to dimension {dim}",
                describe(node)
            )));
        }
        let mut outs = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for s in sizes {
            let part = with_dtype!(t.dtype(), T => {
                let a = get::<T>(node, t, 0)?;
                let v = a.slice_axis(Axis(axis), Slice::from(start..start + s));
                Ok(T::wrap(v.as_standard_layout().into_owned()))
            })?;
            outs.push(part);
            start += s;
        }
        Ok(outs)
    }
}

/// The `[begin, end)`/step slice of one axis per the ONNX clamping rules, as an ndarray
/// [`Slice`].
fn slice_axis(start: i64, end: i64, step: i64, dim: usize) -> Slice {
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
        if s >= e {
            return Slice::new(0, Some(0), 1);
        }
        Slice::new(s as isize, Some(e as isize), step as isize)
    } else {
        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        if s <= e || d == 0 {
            return Slice::new(0, Some(0), 1);
        }
        Slice::new((e + 1) as isize, Some((s + 1) as isize), step as isize)
    }
}

/// `starts`, `ends`, `axes` attributes of Slice before opset 10.
type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

#[derive(Debug)]
struct SliceOp {
    node: Node,
    /// Opset < 10: starts, ends, axes from attributes.
    attrs: Option<SliceAttrs>,
}

impl Operator for SliceOp {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let r = t.shape().len();
        let opt = |i: usize| -> Result<Option<Vec<i64>>> {
            inputs
                .get(i)
                .copied()
                .flatten()
                .map(|v| to_i64_vec(node, v))
                .transpose()
        };
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                to_i64_vec(node, input(node, inputs, 1)?)?,
                to_i64_vec(node, input(node, inputs, 2)?)?,
                opt(3)?,
                opt(4)?,
            ),
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(invalid(
                node,
                "starts, ends, axes and steps differ in length",
            ));
        }
        let mut per_axis: Vec<Slice> = vec![Slice::from(..); r];
        let mut seen = vec![false; r];
        for i in 0..starts.len() {
            let ax = norm_axis(node, axes[i], r)?;
            if std::mem::replace(&mut seen[ax], true) {
                return Err(invalid(node, format!("axis {ax} is sliced twice")));
            }
            if steps[i] == 0 {
                return Err(invalid(node, "a step is 0"));
            }
            per_axis[ax] = slice_axis(starts[i], ends[i], steps[i], t.shape()[ax]);
        }
        let out = with_dtype!(t.dtype(), T => {
            let a = get::<T>(node, t, 0)?;
            let v = a.slice_each_axis(|d| per_axis[d.axis.index()]);
            Ok(T::wrap(v.as_standard_layout().into_owned()))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct Gather {
    node: Node,
    axis: i64,
}

fn gather<T: Elem>(
    node: &Node,
    a: &ArrayD<T>,
    idx: &[i64],
    idx_shape: &[usize],
    axis: usize,
) -> Result<ArrayD<T>> {
    let s = a.shape();
    let n = s[axis];
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..].iter().product();
    let mut shape = s[..axis].to_vec();
    shape.extend_from_slice(idx_shape);
    shape.extend_from_slice(&s[axis + 1..]);
    check_size(node, &shape)?;
    let fixed: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            if j < 0 || j >= n as i64 {
                Err(Error::InvalidInput(format!(
                    "{}: index {i} is out of range for axis {axis} of extent {n}",
                    describe(node)
                )))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_>>()?;
    let data = a.as_standard_layout();
    let src = data.as_slice().unwrap_or(&[]);
    let mut out = Vec::with_capacity(outer * fixed.len() * inner);
    for o in 0..outer {
        for &j in &fixed {
            let b = (o * n + j) * inner;
            out.extend_from_slice(&src[b..b + inner]);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| invalid(node, e))
}

impl Operator for Gather {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let it = input(node, inputs, 1)?;
        let axis = norm_axis(node, self.axis, t.shape().len())?;
        let idx = to_i64_vec(node, it)?;
        let out = with_dtype!(t.dtype(), T => {
            Ok(T::wrap(gather::<T>(node, get::<T>(node, t, 0)?, &idx, it.shape(), axis)?))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct Tile {
    node: Node,
}

impl Operator for Tile {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let reps = super::util::to_dims(node, &to_i64_vec(node, input(node, inputs, 1)?)?)?;
        if reps.len() != t.shape().len() {
            return Err(invalid(
                node,
                format!("repeats {reps:?} do not match rank {}", t.shape().len()),
            ));
        }
        let shape: Vec<usize> = t
            .shape()
            .iter()
            .zip(&reps)
            .map(|(a, b)| a.saturating_mul(*b))
            .collect();
        check_size(node, &shape)?;
        let stop = crate::plan::budget::Stop::current();
        let out = with_dtype!(t.dtype(), T => {
            let a = get::<T>(node, t, 0)?;
            let src: Vec<T> = a.iter().cloned().collect();
            let data = tile(&src, a.shape(), &reps, &mut || {
                if stop.requested() {
                    return Err(stop.error(&|| describe(node)));
                }
                Ok(())
            })?;
            let out = ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| invalid(node, e))?;
            Ok(T::wrap(out))
        })?;
        Ok(vec![out])
    }
}

/// Elements copied between two polls of the run's stop conditions in [`tile`] (a few
/// hundred microseconds of copying, even unoptimized).
const TILE_POLL_EVERY: usize = 1 << 18;

/// `src` (row-major, `shape`) repeated `reps[d]` times along each axis `d`, row-major.
/// From the last axis outwards, each block of the tensor tiled so far (the extent of
/// axis `d` times everything inside it) is copied `reps[d]` times in a row: whole-block
/// copies, at most the output's size per axis. `poll` runs every [`TILE_POLL_EVERY`]
/// elements copied (a deadline or cancellation stops the step there).
fn tile<T: Clone>(
    src: &[T],
    shape: &[usize],
    reps: &[usize],
    poll: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<T>> {
    let mut cur = src.to_vec();
    // Elements of one index of axis `d` and inside it, in `cur` so far.
    let mut inner = 1usize;
    for d in (0..shape.len()).rev() {
        let block = shape[d] * inner;
        if reps[d] != 1 && block > 0 {
            let mut next = Vec::with_capacity(cur.len() * reps[d]);
            let mut since_poll = 0usize;
            for chunk in cur.chunks(block) {
                for _ in 0..reps[d] {
                    if since_poll >= TILE_POLL_EVERY {
                        poll()?;
                        since_poll = 0;
                    }
                    next.extend_from_slice(chunk);
                    since_poll += chunk.len();
                }
            }
            cur = next;
        }
        if reps[d] == 0 {
            return Ok(Vec::new());
        }
        inner = block * reps[d];
    }
    Ok(cur)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Debug)]
struct Pad {
    node: Node,
    mode: PadMode,
    /// Opset < 11: pads and value from attributes.
    attrs: Option<(Vec<i64>, f32)>,
}

/// For each output coordinate along an axis of extent `n`: the source coordinate, or
/// `None` for the constant.
fn pad_map(
    node: &Node,
    n: usize,
    begin: i64,
    end: i64,
    mode: PadMode,
) -> Result<Vec<Option<usize>>> {
    let out = n as i64 + begin + end;
    if out < 0 {
        return Err(invalid(
            node,
            format!("pads {begin},{end} remove more than extent {n}"),
        ));
    }
    let ni = n as i64;
    (0..out)
        .map(|i| {
            let s = i - begin;
            if (0..ni).contains(&s) {
                return Ok(Some(s as usize));
            }
            if n == 0 {
                return match mode {
                    PadMode::Constant => Ok(None),
                    _ => Err(invalid(node, "cannot reflect/edge/wrap-pad an empty axis")),
                };
            }
            Ok(match mode {
                PadMode::Constant => None,
                PadMode::Edge => Some(s.clamp(0, ni - 1) as usize),
                PadMode::Wrap => Some(s.rem_euclid(ni) as usize),
                PadMode::Reflect => {
                    if ni == 1 {
                        Some(0)
                    } else {
                        let p = 2 * (ni - 1);
                        let m = s.rem_euclid(p);
                        Some(if m < ni { m } else { p - m } as usize)
                    }
                }
            })
        })
        .collect()
}

fn pad<T: Elem>(
    node: &Node,
    a: &ArrayD<T>,
    maps: &[Vec<Option<usize>>],
    value: T,
) -> Result<ArrayD<T>> {
    let shape: Vec<usize> = maps.iter().map(Vec::len).collect();
    let total = check_size(node, &shape)?;
    let data = a.as_standard_layout();
    let src = data.as_slice().unwrap_or(&[]);
    let r = shape.len();
    let mut strides = vec![1usize; r];
    for k in (0..r.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * a.shape()[k + 1];
    }
    let mut out = Vec::with_capacity(total);
    if r == 0 {
        out.extend_from_slice(src);
    } else if total > 0 {
        let mut idx = vec![0usize; r];
        'outer: loop {
            let mut base = Some(0usize);
            for k in 0..r - 1 {
                base = match (base, maps[k][idx[k]]) {
                    (Some(b), Some(s)) => Some(b + s * strides[k]),
                    _ => None,
                };
            }
            for m in &maps[r - 1] {
                out.push(match (base, m) {
                    (Some(b), Some(s)) => src[b + s],
                    _ => value,
                });
            }
            for k in (0..r - 1).rev() {
                idx[k] += 1;
                if idx[k] < shape[k] {
                    continue 'outer;
                }
                idx[k] = 0;
            }
            break;
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| invalid(node, e))
}

impl Operator for Pad {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let r = t.shape().len();
        let (pads, value_t) = match &self.attrs {
            Some((p, v)) => (
                p.clone(),
                Some(Tensor::F32(ArrayD::from_elem(IxDyn(&[]), *v))),
            ),
            None => (
                to_i64_vec(node, input(node, inputs, 1)?)?,
                inputs.get(2).copied().flatten().cloned(),
            ),
        };
        let axes: Vec<usize> = match inputs.get(3).copied().flatten() {
            Some(a) => to_i64_vec(node, a)?
                .iter()
                .map(|&x| norm_axis(node, x, r))
                .collect::<Result<_>>()?,
            None => (0..r).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(invalid(
                node,
                format!("pads {pads:?} must have 2×{} entries", axes.len()),
            ));
        }
        let mut be = vec![(0i64, 0i64); r];
        for (k, &ax) in axes.iter().enumerate() {
            be[ax] = (pads[k], pads[k + axes.len()]);
        }
        let maps = (0..r)
            .map(|k| pad_map(node, t.shape()[k], be[k].0, be[k].1, self.mode))
            .collect::<Result<Vec<_>>>()?;
        let out = with_dtype!(t.dtype(), T => {
            let v = value_t
                .as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| super::util::cast_to::<T>(v).iter().next().copied().unwrap_or_default())
                .unwrap_or_default();
            Ok(T::wrap(pad::<T>(node, get::<T>(node, t, 0)?, &maps, v)?))
        })?;
        Ok(vec![out])
    }
}

#[derive(Debug)]
struct TopK {
    node: Node,
    axis: i64,
    largest: bool,
    k_attr: Option<i64>,
}

fn topk<T: Num>(a: &ArrayD<T>, axis: usize, k: usize, largest: bool) -> (ArrayD<T>, ArrayD<i64>) {
    let mut shape = a.shape().to_vec();
    let n = shape[axis];
    shape[axis] = k;
    let mut vals = ArrayD::<T>::default(IxDyn(&shape));
    let mut idxs = ArrayD::<i64>::zeros(IxDyn(&shape));
    let order = |x: &(T, usize), y: &(T, usize)| {
        // NaN sorts as the largest value; ties keep the lower index first.
        let c = match (T::is_nan(x.0), T::is_nan(y.0)) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal),
        };
        (if largest { c.reverse() } else { c }).then(x.1.cmp(&y.1))
    };
    for ((lane, mut vl), mut il) in a
        .lanes(Axis(axis))
        .into_iter()
        .zip(vals.lanes_mut(Axis(axis)))
        .zip(idxs.lanes_mut(Axis(axis)))
    {
        let mut v: Vec<(T, usize)> = lane.iter().copied().zip(0..n).collect();
        v.sort_by(order);
        for j in 0..k {
            vl[j] = v[j].0;
            il[j] = v[j].1 as i64;
        }
    }
    (vals, idxs)
}

impl Operator for TopK {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let axis = norm_axis(node, self.axis, t.shape().len())?;
        let k = match self.k_attr {
            Some(k) => k,
            None => *to_i64_vec(node, input(node, inputs, 1)?)?
                .first()
                .ok_or_else(|| invalid(node, "K is empty"))?,
        };
        if k < 0 || k as usize > t.shape()[axis] {
            return Err(Error::InvalidInput(format!(
                "{}: K={k} is outside 0..={}",
                describe(node),
                t.shape()[axis]
            )));
        }
        with_num!(t.dtype(), T => {
            let (v, i) = topk::<T>(get::<T>(node, t, 0)?, axis, k as usize, self.largest);
            Ok(vec![T::wrap(v), Tensor::I64(i)])
        })
    }
}

/// Registers the indexing and layout operators.
pub fn register(r: &mut Registry) {
    r.register("", "Concat", 4, i64::MAX, |c: &BuildContext<'_>| {
        let axis = Attrs::new(c.node).int_req("axis")?;
        Ok(Box::new(Concat {
            node: slim(c.node),
            axis,
        }) as Box<dyn Operator>)
    });
    r.register("", "Split", 2, i64::MAX, |c: &BuildContext<'_>| {
        let a = Attrs::new(c.node);
        Ok(Box::new(Split {
            node: slim(c.node),
            axis: a.int("axis", 0)?,
            split_attr: if c.opset < 13 {
                a.ints_opt("split")?
            } else {
                None
            },
            num_outputs: a.int_opt("num_outputs")?,
        }) as Box<dyn Operator>)
    });
    r.register("", "Slice", 1, i64::MAX, |c: &BuildContext<'_>| {
        let attrs = if c.opset < 10 {
            let a = Attrs::new(c.node);
            Some((
                a.ints("starts", &[])?,
                a.ints("ends", &[])?,
                a.ints_opt("axes")?,
            ))
        } else {
            None
        };
        Ok(Box::new(SliceOp {
            node: slim(c.node),
            attrs,
        }) as Box<dyn Operator>)
    });
    r.register("", "Gather", 1, i64::MAX, |c: &BuildContext<'_>| {
        let axis = Attrs::new(c.node).int("axis", 0)?;
        Ok(Box::new(Gather {
            node: slim(c.node),
            axis,
        }) as Box<dyn Operator>)
    });
    r.register("", "Tile", 6, i64::MAX, |c: &BuildContext<'_>| {
        Ok(Box::new(Tile { node: slim(c.node) }) as Box<dyn Operator>)
    });
    r.register("", "Pad", 2, i64::MAX, |c: &BuildContext<'_>| {
        let a = Attrs::new(c.node);
        let mode = match a.string("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            m => return Err(invalid(c.node, format!("unknown mode {m:?}"))),
        };
        let attrs = if c.opset < 11 {
            Some((a.ints("pads", &[])?, a.float("value", 0.0)?))
        } else {
            None
        };
        Ok(Box::new(Pad {
            node: slim(c.node),
            mode,
            attrs,
        }) as Box<dyn Operator>)
    });
    r.register("", "TopK", 1, i64::MAX, |c: &BuildContext<'_>| {
        let a = Attrs::new(c.node);
        if a.int("sorted", 1)? == 0 {
            log::debug!("TopK sorted=0: returning sorted results anyway");
        }
        Ok(Box::new(TopK {
            node: slim(c.node),
            axis: a.int("axis", -1)?,
            largest: a.int("largest", 1)? != 0,
            k_attr: if c.opset < 10 {
                Some(a.int_req("k")?)
            } else {
                None
            },
        }) as Box<dyn Operator>)
    });
}

#[cfg(test)]
mod tests {
    use super::tile;
    use ndarray::{ArrayD, IxDyn};
    use proptest::prelude::*;

    /// Tile from the definition: `out[i] = a[i mod shape]` for every index.
    fn reference(a: &ArrayD<i32>, reps: &[usize]) -> ArrayD<i32> {
        let shape: Vec<usize> = a.shape().iter().zip(reps).map(|(s, r)| s * r).collect();
        ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            let src: Vec<usize> = (0..a.ndim()).map(|d| i[d] % a.shape()[d]).collect();
            a[IxDyn(&src)]
        })
    }

    proptest! {
        #[test]
        fn tile_matches_concatenation(
            shape in proptest::collection::vec(0usize..4, 0..5),
            reps in proptest::collection::vec(0usize..4, 5),
        ) {
            let reps = &reps[..shape.len()];
            // Repeats of 0 give an empty output (onnxruntime agrees).
            let n: usize = shape.iter().product();
            let a = ArrayD::from_shape_vec(IxDyn(&shape), (0..n as i32).collect()).expect("shape");
            let got = tile(&a.iter().copied().collect::<Vec<_>>(), &shape, reps, &mut || Ok(()))
                .expect("tile");
            let want = reference(&a, reps);
            prop_assert_eq!(got, want.iter().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn tile_polls_while_copying() {
        // 1 Mi elements out: the poll runs, and its error stops the copy.
        let mut polls = 0;
        let r = tile(&[1u8; 1024], &[1024], &[1024], &mut || {
            polls += 1;
            if polls == 2 {
                Err(crate::Error::Cancelled("test".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.is_err());
        assert_eq!(polls, 2);
    }
}
