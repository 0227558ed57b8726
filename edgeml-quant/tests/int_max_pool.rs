//! `MaxPool` on u8/i8 codes (2-D windows pooled on the codes directly) equals the float
//! `MaxPool` of the same values converted back, for random shapes, kernels, strides,
//! dilations, pads, `auto_pad` and `ceil_mode`, at one and two threads.
#![cfg(feature = "onnx")]

use edgeml_core::DType;
use edgeml_onnx::{Attribute, Dim, ModelBuilder, Node, Plan, PlanOptions, Tensor, ValueInfo};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    shape: [usize; 4],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
    auto_pad: &'static str,
    ceil: bool,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..3, 1usize..5, 1usize..13, 1usize..13),
        (1usize..4, 1usize..4),
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        (0usize..3, 0usize..3, 0usize..3, 0usize..3),
        prop_oneof![
            Just("NOTSET"),
            Just("SAME_UPPER"),
            Just("SAME_LOWER"),
            Just("VALID")
        ],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(s, k, st, d, p, auto_pad, ceil, seed)| Case {
            shape: [s.0, s.1, s.2, s.3],
            kernel: [k.0, k.1],
            strides: [st.0, st.1],
            dilations: [d.0, d.1],
            // Pads smaller than the kernel, as the spec requires.
            pads: [p.0 % k.0, p.1 % k.1, p.2 % k.0, p.3 % k.1],
            auto_pad,
            ceil,
            seed,
        })
}

fn model(c: &Case, dtype: DType) -> edgeml_onnx::Model {
    let ints = |v: &[usize]| Attribute::Ints(v.iter().map(|&x| x as i64).collect());
    let mut node = Node::new("MaxPool", &["x"], &["y"])
        .with_attr("kernel_shape", ints(&c.kernel))
        .with_attr("strides", ints(&c.strides))
        .with_attr("dilations", ints(&c.dilations))
        .with_attr("ceil_mode", Attribute::Int(i64::from(c.ceil)))
        .with_attr("auto_pad", Attribute::String(c.auto_pad.into()));
    if c.auto_pad == "NOTSET" {
        node = node.with_attr("pads", ints(&c.pads));
    }
    ModelBuilder::new(12)
        .input(ValueInfo::tensor(
            "x",
            dtype,
            c.shape.iter().map(|&d| Dim::Known(d)).collect(),
        ))
        .output(ValueInfo::named("y"))
        .node(node)
        .build_unchecked()
}

fn codes(c: &Case) -> Vec<i32> {
    let mut s = c.seed | 1;
    (0..c.shape.iter().product::<usize>())
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 256) as i32
        })
        .collect()
}

fn run(m: &edgeml_onnx::Model, x: Tensor, threads: usize) -> Result<Tensor, String> {
    let reg = edgeml_quant::onnx::registry();
    let plan = Plan::with_registry(m, PlanOptions::with_threads(threads), &reg)
        .map_err(|e| e.to_string())?;
    plan.run(&[("x", x)])
        .map(|mut o| o.remove(0).1)
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn pooled_codes_equal_the_float_pool(c in case()) {
        let v = codes(&c);
        let shape = IxDyn(&c.shape);
        let f = ArrayD::from_shape_vec(shape.clone(), v.iter().map(|&q| q as f32).collect()).unwrap();
        let want = run(&model(&c, DType::F32), Tensor::F32(f), 1);
        let Ok(Tensor::F32(want)) = want else {
            // A window larger than the padded input: both refuse it.
            let e = run(&model(&c, DType::U8), Tensor::U8(ArrayD::from_shape_vec(shape, v.iter().map(|&q| q as u8).collect()).unwrap()), 1);
            prop_assert!(e.is_err(), "float refused, codes gave {e:?}");
            return Ok(());
        };
        for threads in [1, 2] {
            let u = ArrayD::from_shape_vec(shape.clone(), v.iter().map(|&q| q as u8).collect()).unwrap();
            let got = run(&model(&c, DType::U8), Tensor::U8(u), threads);
            let want_u = Tensor::U8(want.mapv(|x| x as u8));
            prop_assert_eq!(got, Ok(want_u), "u8 {:?}", c);
            let i = ArrayD::from_shape_vec(shape.clone(), v.iter().map(|&q| (q - 128) as i8).collect()).unwrap();
            let got = run(&model(&c, DType::I8), Tensor::I8(i), threads);
            let want_i = Tensor::I8(want.mapv(|x| (x as i32).saturating_sub(128).max(-128) as i8));
            prop_assert_eq!(got, Ok(want_i), "i8 {:?}", c);
        }
    }
}

#[test]
fn a_large_pool_splits_across_threads_and_matches() {
    // 64 planes of 112×112, 3×3 stride 2 pad 1: ResNet's stem pool.
    let c = Case {
        shape: [1, 64, 112, 112],
        kernel: [3, 3],
        strides: [2, 2],
        dilations: [1, 1],
        pads: [1, 1, 1, 1],
        auto_pad: "NOTSET",
        ceil: false,
        seed: 3,
    };
    let v = codes(&c);
    let u = ArrayD::from_shape_vec(IxDyn(&c.shape), v.iter().map(|&q| q as u8).collect()).unwrap();
    let f = u.mapv(f32::from);
    let Ok(Tensor::F32(want)) = run(&model(&c, DType::F32), Tensor::F32(f), 1) else {
        panic!("float pool failed");
    };
    for threads in [1, 2] {
        let got = run(&model(&c, DType::U8), Tensor::U8(u.clone()), threads).expect("u8 pool");
        assert_eq!(got, Tensor::U8(want.mapv(|x| x as u8)), "{threads} threads");
    }
}
