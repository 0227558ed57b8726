//! `Resize` (opset 10+) and `Upsample`: `nearest` (all four rounding modes) and
//! `linear` (separable n-linear) with the `half_pixel`, `half_pixel_symmetric`,
//! `pytorch_half_pixel`, `align_corners` and `asymmetric` coordinate transforms.
//!
//! Not supported (planning or running fails with [`Error::Unsupported`]): `cubic`,
//! `tf_crop_and_resize`, `antialias=1`, `keep_aspect_ratio_policy` other than `stretch`.
//! At opset 10 (and for `Upsample`) the transform is `asymmetric` with `floor` rounding,
//! as onnxruntime does.

use super::util::{Elem, check_size, input, slim, to_f32_vec, to_i64_vec};
use crate::ops::attr::{Attrs, describe, invalid, unsupported};
use crate::{BuildContext, Error, Node, Operator, Registry, Result, Tensor, with_dtype};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Debug)]
struct Resize {
    node: Node,
    linear: bool,
    coord: Coord,
    nearest: Nearest,
    /// Input index of `scales` (1 at opset 10 / Upsample, 2 later); `sizes` follows it.
    scales_at: usize,
}

fn source_coord(coord: Coord, x: f64, scale: f64, in_len: usize, out_len: usize) -> f64 {
    match coord {
        Coord::HalfPixel => (x + 0.5) / scale - 0.5,
        Coord::HalfPixelSymmetric => {
            let adj = out_len as f64 / (scale * in_len as f64);
            let center = in_len as f64 / 2.0;
            let offset = center * (1.0 - adj);
            offset + (x + 0.5) / scale - 0.5
        }
        Coord::PytorchHalfPixel => {
            if out_len > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        Coord::AlignCorners => {
            if out_len == 1 {
                0.0
            } else {
                x * (in_len as f64 - 1.0) / (out_len as f64 - 1.0)
            }
        }
        Coord::Asymmetric => x / scale,
    }
}

fn round_nearest(mode: Nearest, x: f64) -> f64 {
    match mode {
        Nearest::RoundPreferFloor => {
            if x.fract() == 0.5 || x.fract() == -0.5 {
                x.floor()
            } else {
                x.round()
            }
        }
        Nearest::RoundPreferCeil => {
            if x.fract() == 0.5 || x.fract() == -0.5 {
                x.ceil()
            } else {
                x.round()
            }
        }
        Nearest::Floor => x.floor(),
        Nearest::Ceil => x.ceil(),
    }
}

/// Gathers `idx` along `axis`.
fn take<T: Clone>(a: ArrayViewD<'_, T>, axis: usize, idx: &[usize]) -> ArrayD<T> {
    a.select(Axis(axis), idx)
}

/// Nearest-neighbour resize of the contiguous `x` (shape `ins`): output element `o` is
/// `x` at `maps[a][o[a]]` on every axis `a`. Written row by row (the last axis) into one
/// contiguous buffer: each row gathers its source row through the last axis' map, and a
/// row whose source row is the previous row's (an upsampled axis) is a copy of it.
fn nearest_gather<T: Copy + 'static>(x: &[T], ins: &[usize], maps: &[Vec<usize>]) -> Vec<T> {
    let r = ins.len();
    let outs: Vec<usize> = maps.iter().map(Vec::len).collect();
    let total: usize = outs.iter().product();
    if r == 0 || total == 0 {
        return x[..total.min(x.len())].to_vec();
    }
    let (w_in, wmap) = (ins[r - 1], &maps[r - 1]);
    let w_out = wmap.len();
    let mut strides = vec![1usize; r];
    for a in (0..r - 1).rev() {
        strides[a] = strides[a + 1] * ins[a + 1];
    }
    let mut out = super::util::with_capacity_pooled::<T>(total);
    let mut idx = vec![0usize; r - 1];
    let mut prev = usize::MAX;
    for _ in 0..total / w_out {
        let src: usize = (0..r - 1).map(|a| maps[a][idx[a]] * strides[a]).sum();
        let start = out.len();
        if src == prev {
            out.extend_from_within(start - w_out..start);
        } else {
            let row = &x[src..src + w_in];
            out.extend(wmap.iter().map(|&j| row[j]));
        }
        prev = src;
        for a in (0..r - 1).rev() {
            idx[a] += 1;
            if idx[a] < outs[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

impl Operator for Resize {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let node = &self.node;
        let t = input(node, inputs, 0)?;
        let r = t.shape().len();
        let scales_t = inputs
            .get(self.scales_at)
            .copied()
            .flatten()
            .filter(|s| !s.is_empty());
        let sizes_t = inputs
            .get(self.scales_at + 1)
            .copied()
            .flatten()
            .filter(|s| !s.is_empty());
        let (scales, sizes): (Vec<f64>, Vec<usize>) = match (scales_t, sizes_t) {
            (_, Some(sz)) => {
                let sz = super::util::to_dims(node, &to_i64_vec(node, sz)?)?;
                if sz.len() != r {
                    return Err(invalid(node, format!("sizes {sz:?} do not match rank {r}")));
                }
                let sc = sz
                    .iter()
                    .zip(t.shape())
                    .map(|(&o, &i)| o as f64 / i.max(1) as f64)
                    .collect();
                (sc, sz)
            }
            (Some(sc), None) => {
                let sc: Vec<f64> = to_f32_vec(node, sc)?.into_iter().map(f64::from).collect();
                if sc.len() != r || sc.iter().any(|&s| s.is_nan() || s <= 0.0 || !s.is_finite()) {
                    return Err(invalid(
                        node,
                        format!("scales {sc:?} must be {r} positive numbers"),
                    ));
                }
                let sz = sc
                    .iter()
                    .zip(t.shape())
                    .map(|(&s, &i)| (s * i as f64).floor() as usize)
                    .collect();
                (sc, sz)
            }
            (None, None) => return Err(invalid(node, "neither scales nor sizes is given")),
        };
        check_size(node, &sizes)?;
        if self.linear {
            let x = match t {
                Tensor::F32(a) => a,
                other => {
                    return Err(Error::Unsupported(format!(
                        "{}: linear resize of {:?}",
                        describe(node),
                        other.dtype()
                    )));
                }
            };
            let mut a = x.clone();
            for ax in 0..r {
                let (n_in, n_out) = (t.shape()[ax], sizes[ax]);
                if n_in == n_out && scales[ax] == 1.0 {
                    continue;
                }
                if n_in == 0 {
                    return Err(invalid(node, "cannot interpolate an empty axis"));
                }
                let mut i0 = Vec::with_capacity(n_out);
                let mut i1 = Vec::with_capacity(n_out);
                let mut w = Vec::with_capacity(n_out);
                for o in 0..n_out {
                    let s = source_coord(self.coord, o as f64, scales[ax], n_in, n_out)
                        .clamp(0.0, (n_in - 1) as f64);
                    let f = s.floor() as usize;
                    i0.push(f);
                    i1.push((f + 1).min(n_in - 1));
                    w.push((s - f as f64) as f32);
                }
                let lo = take(a.view(), ax, &i0);
                let hi = take(a.view(), ax, &i1);
                let mut shape = vec![1usize; r];
                shape[ax] = n_out;
                let wa = ArrayD::from_shape_vec(shape, w).map_err(|e| invalid(node, e))?;
                a = &lo + &((&hi - &lo) * &wa);
            }
            return Ok(vec![Tensor::F32(a)]);
        }
        let maps: Vec<Vec<usize>> = (0..r)
            .map(|ax| {
                let (n_in, n_out) = (t.shape()[ax], sizes[ax]);
                (0..n_out)
                    .map(|o| {
                        let s = source_coord(self.coord, o as f64, scales[ax], n_in, n_out);
                        let s = round_nearest(self.nearest, s);
                        s.clamp(0.0, n_in.saturating_sub(1) as f64) as usize
                    })
                    .collect()
            })
            .collect();
        if t.shape()
            .iter()
            .zip(&maps)
            .any(|(&n, m)| n == 0 && !m.is_empty())
        {
            return Err(invalid(node, "cannot resize an empty axis"));
        }
        let out = with_dtype!(t.dtype(), T => {
            let a = T::get(t).ok_or_else(|| invalid(node, "dtype"))?;
            let a = a.as_standard_layout();
            let xs = a.as_slice().ok_or_else(|| invalid(node, "layout"))?;
            let sizes: Vec<usize> = maps.iter().map(Vec::len).collect();
            let y = ArrayD::from_shape_vec(IxDyn(&sizes), nearest_gather(xs, a.shape(), &maps))
                .map_err(|e| invalid(node, e))?;
            Ok(T::wrap(y))
        })?;
        Ok(vec![out])
    }
}

fn build(c: &BuildContext<'_>) -> Result<Box<dyn Operator>> {
    let a = Attrs::new(c.node);
    let upsample = c.node.op_type == "Upsample";
    let legacy = upsample || c.opset < 11;
    let linear = match a.string("mode", "nearest")?.as_str() {
        "nearest" => false,
        "linear" | "bilinear" => true,
        m => return Err(unsupported(c.node, format!("mode {m:?}"))),
    };
    let coord = if legacy {
        Coord::Asymmetric
    } else {
        match a
            .string("coordinate_transformation_mode", "half_pixel")?
            .as_str()
        {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            m => {
                return Err(unsupported(
                    c.node,
                    format!("coordinate_transformation_mode {m:?}"),
                ));
            }
        }
    };
    let nearest = if legacy {
        Nearest::Floor
    } else {
        match a.string("nearest_mode", "round_prefer_floor")?.as_str() {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            m => return Err(unsupported(c.node, format!("nearest_mode {m:?}"))),
        }
    };
    if a.int("antialias", 0)? != 0 {
        return Err(unsupported(c.node, "antialias=1"));
    }
    if a.string("keep_aspect_ratio_policy", "stretch")? != "stretch" {
        return Err(unsupported(
            c.node,
            "keep_aspect_ratio_policy other than stretch",
        ));
    }
    if a.has("axes") {
        return Err(unsupported(c.node, "the axes attribute"));
    }
    if upsample && c.opset < 9 {
        return Err(unsupported(
            c.node,
            "Upsample before opset 9 (scales attribute)",
        ));
    }
    Ok(Box::new(Resize {
        node: slim(c.node),
        linear,
        coord,
        nearest,
        scales_at: if legacy { 1 } else { 2 },
    }))
}

/// Registers `Resize` and `Upsample`.
pub fn register(r: &mut Registry) {
    r.register("", "Resize", 10, i64::MAX, build);
    r.register("", "Upsample", 9, 9, build);
}

#[cfg(test)]
mod tests {
    use super::{nearest_gather, take};
    use ndarray::{ArrayD, IxDyn};
    use proptest::prelude::*;

    proptest! {
        /// The row-by-row gather equals selecting the map's indices axis by axis.
        #[test]
        fn nearest_gather_is_select_on_every_axis(
            dims in proptest::collection::vec(1usize..5, 0..5),
            seed in 0u64..10_000,
            out_len in proptest::collection::vec(0usize..7, 5),
        ) {
            let n: usize = dims.iter().product();
            let x = ArrayD::from_shape_vec(IxDyn(&dims), (0..n).map(|i| i as f32).collect())
                .expect("shape");
            let mut s = seed;
            let maps: Vec<Vec<usize>> = dims
                .iter()
                .zip(&out_len)
                .map(|(&d, &o)| {
                    (0..o)
                        .map(|_| {
                            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                            (s >> 33) as usize % d
                        })
                        .collect()
                })
                .collect();
            let mut want = x.clone();
            for (ax, m) in maps.iter().enumerate() {
                want = take(want.view(), ax, m);
            }
            let got = nearest_gather(x.as_slice().expect("contiguous"), &dims, &maps);
            prop_assert_eq!(got, want.iter().copied().collect::<Vec<f32>>());
        }
    }
}
