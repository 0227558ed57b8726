//! Unit tests of the shape operators.

use super::{Reshape, Reshaper, ShapeFn, reshape_target};
use crate::{Node, Operator, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Given by value, a reshape keeps the array's memory (no copy) and gives the same
/// tensor as the by-reference path.
#[test]
fn reshapes_by_value_keep_the_memory() {
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 3, 4]), (0..24).map(|i| i as f32).collect()).unwrap();
    let spec = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![6, -1]).unwrap());
    let reshape = Reshape {
        node: Node::default(),
        allowzero: false,
    };
    let flatten = Reshaper {
        node: Node::default(),
        f: ShapeFn::Flatten(2),
    };
    for (op, rest) in [
        (&reshape as &dyn Operator, vec![Some(&spec)]),
        (&flatten as &dyn Operator, vec![]),
    ] {
        assert!(op.consumes_first_input());
        let t = Tensor::F32(x.clone());
        let mut args = vec![Some(&t)];
        args.extend(rest.iter().copied());
        let want = op.run(&args).unwrap();
        let got = op.run_consuming(Tensor::F32(x.clone()), &rest).unwrap();
        assert_eq!(got, want);
        let owned = Tensor::F32(x.clone());
        let ptr_owned = match &owned {
            Tensor::F32(a) => a.as_ptr(),
            _ => unreachable!(),
        };
        let got = op.run_consuming(owned, &rest).unwrap();
        match &got[0] {
            Tensor::F32(a) => assert_eq!(a.as_ptr(), ptr_owned),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn reshape_targets_follow_the_spec_and_reject_hostile_shapes() {
    let n = Node::default();
    assert_eq!(
        reshape_target(&n, &[2, 3, 4], &[0, -1], false).unwrap(),
        vec![2, 12]
    );
    assert_eq!(
        reshape_target(&n, &[0, 3], &[3, 0], true).unwrap(),
        vec![3, 0]
    );
    assert!(reshape_target(&n, &[2, 3], &[-1, -1], false).is_err());
    assert!(reshape_target(&n, &[2, 3], &[-2], false).is_err());
    assert!(reshape_target(&n, &[2, 3], &[i64::MAX, i64::MAX, -1], false).is_err());
    assert!(reshape_target(&n, &[2, 3], &[4, -1], false).is_err());
}
