//! onnxruntime reference fixtures for the conv operators (see `nn_util`).
#![allow(missing_docs)]

mod nn_util;

#[test]
fn conv_fixtures_match_onnxruntime() {
    nn_util::run_all(&["conv"]);
}

#[test]
fn fused_conv_fixtures_match_onnxruntime() {
    nn_util::run_all(&["fusedconv"]);
}

mod one_pixel {
    //! Pointwise convolutions on a 1×1 map (the squeeze-excitation FCs) take a
    //! matrix–vector path: checked against an f64 reference, with groups, bias, `Z`, an
    //! activation, and weights constant at build time or not.
    use edgeml_onnx::ops::default_registry;
    use edgeml_onnx::{Attribute, BuildContext, Node, Tensor};
    use ndarray::{ArrayD, IxDyn};
    use proptest::prelude::*;

    fn filled(shape: &[usize], seed: u32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 997) as f32 / 500.0
                    - 1.0
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape")
    }

    proptest! {
        #[test]
        fn pointwise_conv_on_a_1x1_map_matches_f64(
            n in 1usize..3, cg in 1usize..40, mg in 1usize..30, group in 1usize..3,
            fused in any::<bool>(), const_w in any::<bool>(),
        ) {
            let (c, m) = (cg * group, mg * group);
            let x = filled(&[n, c, 1, 1], 1);
            let w = filled(&[m, cg, 1, 1], 2);
            let b = filled(&[m], 3);
            let z = filled(&[n, m, 1, 1], 4);
            let (domain, op) = if fused { ("com.microsoft", "FusedConv") } else { ("", "Conv") };
            let mut node = Node {
                op_type: op.into(),
                domain: domain.into(),
                inputs: ["x", "w", "b", "z"][..if fused { 4 } else { 3 }].iter().map(|s| s.to_string()).collect(),
                outputs: vec!["y".into()],
                ..Default::default()
            };
            node.attributes.push(("group".into(), Attribute::Int(group as i64)));
            if fused {
                node.attributes.push(("activation".into(), Attribute::String("Relu".into())));
            }
            let reg = default_registry();
            let opset = if fused { 1 } else { 13 };
            let f = reg.lookup(domain, op, opset).expect("registered");
            let (xt, wt, bt, zt) = (Tensor::F32(x.clone()), Tensor::F32(w.clone()), Tensor::F32(b.clone()), Tensor::F32(z.clone()));
            let mut consts = vec![None, const_w.then_some(&wt), None];
            if fused { consts.push(None); }
            let built = f.build(&BuildContext::new(&node, opset, consts)).unwrap();
            let mut args = vec![Some(&xt), Some(&wt), Some(&bt)];
            if fused { args.push(Some(&zt)); }
            let y = built.run(&args).unwrap();
            let y = y[0].as_f32().unwrap();
            prop_assert_eq!(y.shape(), &[n, m, 1, 1][..]);
            for img in 0..n {
                for oc in 0..m {
                    let g = oc / mg;
                    let mut s = b[oc] as f64;
                    for k in 0..cg {
                        s += w[[oc, k, 0, 0]] as f64 * x[[img, g * cg + k, 0, 0]] as f64;
                    }
                    if fused {
                        s = (s + z[[img, oc, 0, 0]] as f64).max(0.0);
                    }
                    let got = y[[img, oc, 0, 0]] as f64;
                    prop_assert!((got - s).abs() <= 1e-5 * (1.0 + s.abs()), "image {} channel {}: {} vs {}", img, oc, got, s);
                }
            }
        }
    }
}
