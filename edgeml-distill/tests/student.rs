//! The MLP student and its trainer: exact gradients, reproducibility, bad input.
#![allow(clippy::unwrap_used)]

use edgeml_distill::{
    CrossEntropy, Error, ErrorKind, Kd, KdConfig, Mlp, Optimizer, Standardization, Targets,
    TrainConfig, TrainData, train,
};
use ndarray::Array2;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tiny() -> (Mlp, Array2<f32>, Vec<f32>, Vec<i64>) {
    let mut mlp = Mlp::new(&[3], &[5, 4], 3, 11).unwrap();
    let x = Array2::from_shape_vec((6, 3), values(18, 1)).unwrap();
    mlp.set_standardization(Some(Standardization {
        mean: vec![0.1, -0.2, 0.0],
        std: vec![0.5, 2.0, 1.0],
    }))
    .unwrap();
    let teacher: Vec<f32> = values(18, 2).iter().map(|v| 3.0 * v).collect();
    (mlp, x, teacher, vec![0, 2, 1, 1, 0, 2])
}

#[test]
fn gradient_matches_finite_differences() {
    let (mut mlp, x, teacher, labels) = tiny();
    let kd = Kd::new(KdConfig {
        temperature: 3.0,
        ..KdConfig::default()
    });
    let targets = Targets::teacher(&teacher).with_labels(&labels);
    let mut grad = vec![0.0f32; mlp.num_params()];
    mlp.loss_and_grad(x.view(), &kd, &targets, &mut grad)
        .unwrap();
    let mut scratch = grad.clone();
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    for (i, &gi) in grad.iter().enumerate() {
        let p0 = mlp.params()[i];
        mlp.params_mut()[i] = p0 + h;
        let up = mlp
            .loss_and_grad(x.view(), &kd, &targets, &mut scratch)
            .unwrap();
        mlp.params_mut()[i] = p0 - h;
        let down = mlp
            .loss_and_grad(x.view(), &kd, &targets, &mut scratch)
            .unwrap();
        mlp.params_mut()[i] = p0;
        let fd = (up - down) / (2.0 * f64::from(h));
        let err = (fd - f64::from(gi)).abs() / (1e-2 + fd.abs());
        worst = worst.max(err);
        assert!(
            err < 2e-3,
            "parameter {i}: analytic {} vs finite difference {fd}",
            grad[i]
        );
    }
    assert!(
        grad.iter().any(|&g| g.abs() > 1e-3),
        "a zero gradient tests nothing"
    );
    eprintln!("worst relative error {worst:.2e}");
}

#[test]
fn gradient_does_not_depend_on_chunking_or_threads() {
    // 200 rows span several 32-row chunks and the parallel path.
    let mut mlp = Mlp::new(&[16], &[64], 4, 3).unwrap();
    let x = Array2::from_shape_vec((200, 16), values(3200, 5)).unwrap();
    let labels: Vec<i64> = (0..200).map(|i| i % 4).collect();
    let ce = CrossEntropy::default();
    let mut g1 = vec![0.0; mlp.num_params()];
    mlp.loss_and_grad(x.view(), &ce, &Targets::labels(&labels), &mut g1)
        .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut g2 = vec![0.0; mlp.num_params()];
    pool.install(|| mlp.loss_and_grad(x.view(), &ce, &Targets::labels(&labels), &mut g2))
        .unwrap();
    assert_eq!(g1, g2);
    mlp.params_mut()[0] += 1.0;
    let mut g3 = vec![0.0; mlp.num_params()];
    mlp.loss_and_grad(x.view(), &ce, &Targets::labels(&labels), &mut g3)
        .unwrap();
    assert_ne!(g1, g3);
}

fn fit(seed: u64, optimizer: Optimizer) -> Mlp {
    let (_, x, teacher, labels) = tiny();
    let mut mlp = Mlp::new(&[3], &[5, 4], 3, seed).unwrap();
    let t = Array2::from_shape_vec((6, 3), teacher).unwrap();
    let data = TrainData {
        x: x.view(),
        labels: Some(&labels),
        teacher: Some(t.view()),
    };
    let cfg = TrainConfig {
        epochs: 20,
        batch_size: 4,
        optimizer,
        weight_decay: 1e-3,
        validation_fraction: 0.34,
        seed,
        ..TrainConfig::default()
    };
    let mut epochs = 0;
    train(&mut mlp, &Kd::default(), &data, &cfg, &mut |_| epochs += 1).unwrap();
    assert!(epochs > 0);
    mlp
}

#[test]
fn training_is_reproducible_for_a_seed() {
    for opt in [
        Optimizer::adam_with_lr(1e-2),
        Optimizer::Sgd {
            lr: 0.05,
            momentum: 0.9,
        },
    ] {
        assert_eq!(fit(5, opt).params(), fit(5, opt).params(), "{opt:?}");
        assert_ne!(fit(5, opt).params(), fit(6, opt).params(), "{opt:?}");
    }
}

#[test]
fn training_reduces_the_loss() {
    let (_, x, _, labels) = tiny();
    let mut mlp = Mlp::new(&[3], &[8], 3, 1).unwrap();
    let data = TrainData {
        x: x.view(),
        labels: Some(&labels),
        teacher: None,
    };
    let cfg = TrainConfig {
        epochs: 200,
        validation_fraction: 0.0,
        optimizer: Optimizer::adam_with_lr(1e-2),
        ..TrainConfig::default()
    };
    let r = train(&mut mlp, &CrossEntropy::default(), &data, &cfg, &mut |_| {}).unwrap();
    let first = r.history[0].train_loss;
    let last = r.history[r.history.len() - 1].train_loss;
    assert!(last < 0.2 * first, "loss {first} -> {last}");
}

#[test]
fn bad_input_is_a_typed_error() {
    let (mut mlp, x, teacher, labels) = tiny();
    let t = Array2::from_shape_vec((6, 3), teacher.clone()).unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let kd = Kd::default();
    let mut run = |data: TrainData<'_>, cfg: &TrainConfig| {
        train(&mut mlp, &kd, &data, cfg, &mut |_| {}).unwrap_err()
    };
    // data/label length mismatch
    let short = &labels[..5];
    let e = run(
        TrainData {
            x: x.view(),
            labels: Some(short),
            teacher: Some(t.view()),
        },
        &cfg,
    );
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                what: "labels",
                expected: 6,
                got: 5
            }
        ),
        "{e}"
    );
    // teacher/student class-count mismatch
    let t4 = Array2::<f32>::zeros((6, 4));
    let e = run(
        TrainData {
            x: x.view(),
            labels: Some(&labels),
            teacher: Some(t4.view()),
        },
        &cfg,
    );
    assert_eq!(
        e,
        Error::ClassMismatch {
            student: 3,
            teacher: 4
        }
    );
    // a label out of range, through the loss
    let bad = [0i64, 1, 2, 3, 0, 1];
    let e = run(
        TrainData {
            x: x.view(),
            labels: Some(&bad),
            teacher: Some(t.view()),
        },
        &cfg,
    );
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // NaN input
    let mut xn = x.clone();
    xn[[2, 1]] = f32::NAN;
    let e = run(
        TrainData {
            x: xn.view(),
            labels: Some(&labels),
            teacher: Some(t.view()),
        },
        &cfg,
    );
    assert_eq!(e.kind(), ErrorKind::NonFinite, "{e}");
    // wrong width
    let x4 = Array2::<f32>::zeros((6, 4));
    let e = run(
        TrainData {
            x: x4.view(),
            labels: Some(&labels),
            teacher: Some(t.view()),
        },
        &cfg,
    );
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch, "{e}");
    // configuration out of domain
    for bad_cfg in [
        TrainConfig {
            batch_size: 0,
            ..cfg.clone()
        },
        TrainConfig {
            validation_fraction: 1.0,
            ..cfg.clone()
        },
        TrainConfig {
            optimizer: Optimizer::adam_with_lr(f32::NAN),
            ..cfg.clone()
        },
        TrainConfig {
            weight_decay: -1.0,
            ..cfg.clone()
        },
    ] {
        let e = run(
            TrainData {
                x: x.view(),
                labels: Some(&labels),
                teacher: Some(t.view()),
            },
            &bad_cfg,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad_cfg:?}: {e}");
    }
    assert!(Mlp::new(&[0], &[4], 3, 0).is_err());
    assert!(Mlp::new(&[4], &[0], 3, 0).is_err());
    assert!(Mlp::new(&[4], &[4], 1, 0).is_err());
}

#[test]
fn accuracy_and_agreement_count_top_classes() {
    use edgeml_distill::{accuracy, agreement, argmax};
    let a = Array2::from_shape_vec((3, 2), vec![1.0, 0.0, 0.0, 1.0, 2.0, 3.0]).unwrap();
    let b = Array2::from_shape_vec((3, 2), vec![0.9, 0.1, 0.6, 0.4, 0.2, 0.8]).unwrap();
    assert_eq!(accuracy(a.view(), &[0, 1, 0]), 2.0 / 3.0);
    assert_eq!(agreement(a.view(), b.view()), 2.0 / 3.0);
    assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
}
