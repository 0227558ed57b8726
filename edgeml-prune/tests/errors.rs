//! Bad input gives typed errors, never a panic.

use edgeml_prune::pattern::{BlockReduce, Norm, block_mask, keep_of_group, ln_structured};
use edgeml_prune::select::{prune_smallest_k, threshold_mask};
use edgeml_prune::{
    Amount, ConstantSparsity, Error, ErrorKind, GradualCubic, Pattern, PolynomialDecay, Pruner,
    global_magnitude, l1_unstructured,
};

#[test]
fn sparsity_outside_unit_interval() {
    let w = [1.0f32, 2.0, 3.0, 4.0];
    for s in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
        let e = Pattern::Magnitude.mask(&w, &[4], s).unwrap_err();
        assert!(matches!(e, Error::InvalidSparsity { .. }), "{s}: {e}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(l1_unstructured(&w, Amount::Fraction(s)).is_err());
        assert!(global_magnitude(&[&w], Amount::Fraction(s)).is_err());
    }
    assert!(matches!(
        l1_unstructured(&w, Amount::Count(5)),
        Err(Error::InvalidSparsity { .. })
    ));
    let mut keep = [true; 4];
    assert!(prune_smallest_k(&w, 5, &mut keep).is_err());
    assert!(threshold_mask(&w, 1.0, &mut keep).is_err());
    // A count of n prunes everything, as in PyTorch.
    assert_eq!(l1_unstructured(&w, Amount::Count(4)).unwrap(), [false; 4]);
}

#[test]
fn nan_weights_are_an_error_inf_ranks_highest() {
    let w = [1.0f32, f32::NAN, 3.0];
    for p in [
        Pattern::Magnitude,
        Pattern::MagnitudeThreshold,
        Pattern::Channels {
            axis: 0,
            norm: Norm::L2,
        },
        Pattern::Block {
            height: 1,
            width: 2,
            reduce: BlockReduce::Max,
        },
        Pattern::keep_of_group(1, 3, 1),
    ] {
        let e = p.mask(&w, &[1, 3], 0.3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NonFinite, "{p:?}");
    }
    let e = global_magnitude(&[&[1.0, 2.0], &w], Amount::Count(1)).unwrap_err();
    assert_eq!(
        e,
        Error::NaN {
            what: "layer 1".into(),
            index: 1
        }
    );
    // -NaN too (sign bit set).
    let neg_nan = f32::from_bits(0xffc0_0000);
    assert!(global_magnitude(&[&[neg_nan]], Amount::Count(0)).is_err());
    let m = l1_unstructured(
        &[f32::INFINITY, -1.0, f32::NEG_INFINITY, 0.5],
        Amount::Count(2),
    )
    .unwrap();
    assert_eq!(m, [true, false, true, false]);
}

#[test]
fn empty_layers_and_bad_shapes() {
    assert!(matches!(
        l1_unstructured(&[], Amount::Count(0)),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        global_magnitude(&[], Amount::Count(0)),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        global_magnitude(&[&[1.0], &[]], Amount::Count(0)),
        Err(Error::Empty(_))
    ));
    let e = Pattern::Magnitude
        .mask(&[1.0, 2.0, 3.0], &[2, 2], 0.5)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    let mut short = [true; 2];
    let e = Pattern::Magnitude
        .keep_mask(&[1.0, 2.0, 3.0], &[3], 0.5, &mut short)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    assert!(Pattern::Magnitude.mask(&[], &[0], 0.5).is_err());
    // Overflowing shapes do not panic.
    assert!(
        Pattern::Magnitude
            .mask(&[1.0], &[usize::MAX, 2], 0.5)
            .is_err()
    );
}

#[test]
fn patterns_that_do_not_fit() {
    let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
    // N:M with a group that does not divide the axis.
    let e = keep_of_group(&w, &[3, 4], 2, 3, 1).unwrap_err();
    assert!(matches!(e, Error::PatternMismatch { .. }), "{e}");
    assert!(keep_of_group(&w, &[3, 4], 1, 3, 0).is_ok());
    assert!(matches!(
        keep_of_group(&w, &[3, 4], 0, 4, 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        keep_of_group(&w, &[3, 4], 5, 4, 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        keep_of_group(&w, &[3, 4], 2, 4, 2),
        Err(Error::PatternMismatch { .. })
    ));
    // Even at sparsity 0 the pattern must fit.
    assert!(
        Pattern::keep_of_group(2, 3, 1)
            .mask(&w, &[3, 4], 0.0)
            .is_err()
    );
    assert_eq!(
        Pattern::keep_of_group(2, 4, 1)
            .mask(&w, &[3, 4], 0.0)
            .unwrap(),
        vec![true; 12]
    );
    // Structured pruning needs 2 dims and an axis in range.
    assert!(matches!(
        ln_structured(&w, &[12], Amount::Count(1), Norm::L1, 0),
        Err(Error::PatternMismatch { .. })
    ));
    assert!(matches!(
        ln_structured(&w, &[3, 4], Amount::Count(1), Norm::L1, 2),
        Err(Error::PatternMismatch { .. })
    ));
    assert!(ln_structured(&w, &[3, 4], Amount::Count(4), Norm::L1, 0).is_err());
    // Blocks: a zero dimension is an error; blocks that do not divide are partial.
    assert!(matches!(
        block_mask(&w, &[3, 4], 0, 2, BlockReduce::Mean, Amount::Count(1)),
        Err(Error::InvalidArgument(_))
    ));
    let m = block_mask(&w, &[3, 4], 2, 3, BlockReduce::Mean, Amount::Count(1)).unwrap();
    // Blocks (mean |w|): [0..2,0..3] = 3, [0..2,3] = 5, [2,0..3] = 9, [2,3] = 11.
    assert_eq!(
        m,
        [
            false, false, false, true, false, false, false, true, true, true, true, true
        ]
    );
}

#[test]
fn schedules_validate_parameters() {
    assert!(ConstantSparsity::new(1.0, 0, None, 100).is_err());
    assert!(ConstantSparsity::new(0.5, 10, Some(5), 100).is_err());
    assert!(ConstantSparsity::new(0.5, 0, None, 0).is_err());
    assert!(ConstantSparsity::new(0.5, 5, Some(5), 1).is_ok());
    assert!(PolynomialDecay::new(0.0, 1.0, 0, 10).is_err());
    assert!(PolynomialDecay::new(-0.1, 0.5, 0, 10).is_err());
    assert!(PolynomialDecay::new(0.0, 0.5, 10, 10).is_err());
    assert!(
        PolynomialDecay::new(0.0, 0.5, 0, 10)
            .unwrap()
            .with_frequency(0)
            .is_err()
    );
    assert!(
        PolynomialDecay::new(0.0, 0.5, 0, 10)
            .unwrap()
            .with_power(f32::NAN)
            .is_err()
    );
    assert!(GradualCubic::new(0.0, 0.5, 0, 0, 10).is_err());
    assert!(GradualCubic::new(0.0, 0.5, 0, 10, 0).is_err());
    assert!(GradualCubic::new(0.0, 0.5, u64::MAX, 2, 2).is_err());
    assert!(GradualCubic::new(0.0, f64::NAN, 0, 2, 2).is_err());
}
