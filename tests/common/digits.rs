//! The bundled digits data (`tests/fixtures/digits`, made by `scripts/make_fixtures.py`)
//! for the tests of every crate: the test set, argmax accuracy and calibration batches.
//! Included with `#[path = "../../tests/common/digits.rs"] mod digits;`.
#![allow(dead_code)]

use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;
use std::path::PathBuf;

/// `tests/fixtures/digits` of the workspace (every crate sits one level below it).
pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits")
}

/// The 450 test images (`[450, 1, 8, 8]`, scaled to [0, 1]) and their labels.
pub(crate) fn test_set() -> (ArrayD<f32>, ArrayD<i64>) {
    let x: ArrayD<f32> = read_npy(dir().join("x_test.npy")).expect("x_test.npy");
    let y: ArrayD<i64> = read_npy(dir().join("y_test.npy")).expect("y_test.npy");
    (x, y)
}

/// The share of rows of `scores` (`[n, classes]`) whose largest entry (the first, on
/// ties) is at the row's label.
pub(crate) fn accuracy(scores: &ArrayD<f32>, labels: &ArrayD<i64>) -> f64 {
    assert_eq!(scores.shape()[0], labels.len(), "one label per row");
    let right = scores
        .axis_iter(Axis(0))
        .zip(labels.iter())
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            best.0 as i64 == **label
        })
        .count();
    right as f64 / labels.len() as f64
}

/// The first 100 images of `x` in batches of 10 (calibration data).
pub(crate) fn calibration(x: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    (0..10)
        .map(|i| {
            x.slice_axis(Axis(0), (i * 10..i * 10 + 10).into())
                .to_owned()
        })
        .collect()
}
