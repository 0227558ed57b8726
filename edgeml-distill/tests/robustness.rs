//! Extreme inputs give finite results; bad inputs give typed errors, never panics.

use edgeml_distill::{
    AttentionTransfer, CosineEmbedding, CrossEntropy, CrossEntropyConfig, DistillLoss, Divergence,
    Error, ErrorKind, Kd, KdConfig, Mse, SoftConfig, SoftLoss, Targets, TeacherOutput, WeightedSum,
};

const TEMPERATURES: [f32; 6] = [0.5, 1.0, 2.0, 4.0, 10.0, 20.0];

fn kd(t: f32, teacher: TeacherOutput) -> Kd {
    Kd::new(KdConfig {
        temperature: t,
        teacher,
        hard: CrossEntropyConfig {
            label_smoothing: 0.1,
            ..CrossEntropyConfig::default()
        },
        ..KdConfig::default()
    })
}

fn all_finite(loss: f64, g: &[f32]) -> bool {
    loss.is_finite() && g.iter().all(|x| x.is_finite())
}

/// Student/teacher pairs of 2 × 5 logits with extreme values.
fn extreme_logits() -> Vec<(Vec<f32>, Vec<f32>)> {
    let big = [1e4f32, -1e4, 0.0, 1e4, -1e4, -1e4, 1e4, 1e4, 0.0, -1e4];
    let equal = [3.0f32; 10];
    let one_hot = [1e4f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1e4, 0.0, 0.0];
    vec![
        (big.to_vec(), big.to_vec()),
        (big.to_vec(), equal.to_vec()),
        (equal.to_vec(), big.to_vec()),
        (equal.to_vec(), equal.to_vec()),
        (one_hot.to_vec(), big.iter().map(|x| -x).collect()),
        (vec![-1e4; 10], one_hot.to_vec()),
    ]
}

#[test]
fn extreme_logits_give_finite_losses_and_gradients() {
    let labels = [1i64, 4];
    for t in TEMPERATURES {
        for (zs, zt) in extreme_logits() {
            let mut g = vec![f32::NAN; 10];
            let targets = Targets::teacher(&zt).with_labels(&labels);
            let v = kd(t, TeacherOutput::Logits)
                .loss_and_grad(&zs, 2, 5, &targets, &mut g)
                .expect("kd");
            assert!(all_finite(v.total, &g), "T={t} {zs:?} {zt:?}: {v:?} {g:?}");
            assert!(v.soft >= -1e-6, "KL must not be negative: {}", v.soft);
            for d in [
                Divergence::ForwardKl,
                Divergence::ReverseKl,
                Divergence::JensenShannon,
                Divergence::SoftCrossEntropy,
            ] {
                let l = SoftLoss::new(SoftConfig {
                    divergence: d,
                    temperature: t,
                    ..SoftConfig::default()
                });
                let loss = l.loss_and_grad(&zs, 2, 5, &targets, &mut g).expect("soft");
                assert!(all_finite(loss, &g), "{d:?} T={t}: {loss} {g:?}");
            }
            let loss = CrossEntropy::default()
                .loss_and_grad(&zs, 2, 5, &targets, &mut g)
                .expect("ce");
            assert!(all_finite(loss, &g));
            if zs[..2] == [1e4, -1e4] && zs[9] == -1e4 {
                // labels at -1e4 with two classes at +1e4: 2e4 + ln 2 nats per sample
                assert!((loss - (2e4 + 2f64.ln())).abs() < 1e-9 * 2e4, "{loss}");
            }
        }
    }
}

#[test]
fn equal_logits_give_zero_divergence_and_log_c_cross_entropy() {
    let z = [0.25f32; 8];
    let mut g = [f32::NAN; 8];
    let v = Kd::new(KdConfig {
        hard_weight: 1.0,
        soft_weight: 1.0,
        ..KdConfig::default()
    })
    .loss_and_grad(&z, 2, 4, &Targets::teacher(&z).with_labels(&[0, 3]), &mut g)
    .expect("kd");
    assert!(v.soft.abs() < 1e-7, "{v:?}");
    assert!((v.hard - 4f64.ln()).abs() < 1e-6, "{v:?}");
    // gradient of CE alone: (1/4 − onehot)/batch
    assert!(
        (g[0] - (0.25 - 1.0) / 2.0).abs() < 1e-6 && (g[1] - 0.125).abs() < 1e-6,
        "{g:?}"
    );
}

#[test]
fn one_hot_teachers_as_probabilities_and_log_probabilities() {
    let zs = [2.0f32, -1.0, 0.5, 1e4, -1e4, 0.0];
    let p = [0.0f32, 1.0, 0.0, 1.0, 0.0, 0.0];
    let lp: Vec<f32> = p.iter().map(|x| x.ln()).collect();
    for t in TEMPERATURES {
        let mut g1 = [f32::NAN; 6];
        let mut g2 = [f32::NAN; 6];
        let a = kd(t, TeacherOutput::Probabilities)
            .loss_and_grad(
                &zs,
                2,
                3,
                &Targets::teacher(&p).with_labels(&[1, 0]),
                &mut g1,
            )
            .expect("probabilities");
        let b = kd(t, TeacherOutput::LogProbabilities)
            .loss_and_grad(
                &zs,
                2,
                3,
                &Targets::teacher(&lp).with_labels(&[1, 0]),
                &mut g2,
            )
            .expect("log-probabilities");
        assert!(
            all_finite(a.total, &g1) && all_finite(b.total, &g2),
            "T={t}: {a:?} {g1:?}"
        );
        assert_eq!(a, b);
        assert_eq!(g1, g2);
        for d in [
            Divergence::ForwardKl,
            Divergence::JensenShannon,
            Divergence::SoftCrossEntropy,
        ] {
            let cfg = SoftConfig {
                divergence: d,
                temperature: t,
                teacher: TeacherOutput::Probabilities,
                ..SoftConfig::default()
            };
            let loss = SoftLoss::new(cfg)
                .loss_and_grad(&zs, 2, 3, &Targets::teacher(&p), &mut g1)
                .expect("soft");
            assert!(all_finite(loss, &g1), "{d:?} T={t}");
        }
        // KL(q ‖ one-hot) is infinite: a typed error
        let cfg = SoftConfig {
            divergence: Divergence::ReverseKl,
            temperature: t,
            teacher: TeacherOutput::Probabilities,
            ..SoftConfig::default()
        };
        let e = SoftLoss::new(cfg)
            .loss_and_grad(&zs, 2, 3, &Targets::teacher(&p), &mut g1)
            .unwrap_err();
        assert!(matches!(e, Error::InfiniteLoss(_)), "{e}");
    }
}

#[test]
fn all_ignored_or_masked_batches_give_zero() {
    let z = [1.0f32, 2.0, 3.0, 4.0];
    let mut g = [f32::NAN; 4];
    let loss = CrossEntropy::default()
        .loss_and_grad(&z, 2, 2, &Targets::labels(&[-100, -100]), &mut g)
        .expect("ce");
    assert_eq!((loss, g), (0.0, [0.0; 4]));
    let t = Targets::teacher(&z)
        .with_labels(&[0, 1])
        .with_sample_weights(&[0.0, 0.0]);
    let v = Kd::default()
        .loss_and_grad(&z, 2, 2, &t, &mut g)
        .expect("kd");
    assert_eq!((v.total, g), (0.0, [0.0; 4]));
}

/// Calls every loss with the same bad input and returns the errors.
fn all_errors(
    zs: &[f32],
    b: usize,
    w: usize,
    t: &Targets<'_>,
) -> Vec<(String, edgeml_core::Error)> {
    let losses: Vec<(&str, Box<dyn DistillLoss>)> = vec![
        ("kd", Box::new(Kd::default())),
        ("ce", Box::new(CrossEntropy::default())),
        ("soft", Box::new(SoftLoss::default())),
        ("mse", Box::new(Mse)),
        ("cosine", Box::new(CosineEmbedding)),
        ("attention", Box::new(AttentionTransfer::new(1))),
    ];
    let mut g = vec![0.0f32; zs.len()];
    losses
        .into_iter()
        .filter_map(|(n, l)| {
            l.loss_and_grad(zs, b, w, t, &mut g)
                .err()
                .map(|e| (n.to_string(), e))
        })
        .collect()
}

#[test]
fn bad_inputs_are_typed_errors() {
    let zs = [0.5f32, 1.0, -1.0, 2.0, 0.0, 1.0];
    let zt = [1.0f32, 0.0, 0.0, 0.5, 0.5, 2.0];
    let y = [0i64, 2];
    let ok = Targets::teacher(&zt).with_labels(&y);
    assert!(all_errors(&zs, 2, 3, &ok).is_empty());
    let mut g = [0.0f32; 6];

    // label out of range
    let e = Kd::default()
        .loss_and_grad(
            &zs,
            2,
            3,
            &Targets::teacher(&zt).with_labels(&[0, 3]),
            &mut g,
        )
        .unwrap_err();
    assert_eq!(
        e,
        Error::LabelOutOfRange {
            sample: 1,
            label: 3,
            classes: 3
        }
    );
    let e = CrossEntropy::default()
        .loss_and_grad(&zs, 2, 3, &Targets::labels(&[-1, 0]), &mut g)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    // NaN / Inf in the student or the teacher: every loss refuses them
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut s = zs;
        s[4] = bad;
        let errs = all_errors(&s, 2, 3, &ok);
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert!(
            errs.iter().all(|(_, e)| e.kind() == ErrorKind::NonFinite),
            "{errs:?}"
        );
        let mut t = zt;
        t[1] = bad;
        let errs = all_errors(&zs, 2, 3, &Targets::teacher(&t).with_labels(&y));
        // the cross-entropy does not read the teacher
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(
            errs.iter().all(|(_, e)| e.kind() == ErrorKind::NonFinite),
            "{errs:?}"
        );
    }
    let e = Kd::default().loss_and_grad(
        &[f32::NAN, 0.0, 0.0],
        1,
        3,
        &Targets::teacher(&zt[..3]).with_labels(&[0]),
        &mut g[..3],
    );
    assert!(
        matches!(
            e,
            Err(Error::NonFinite {
                what: "student logits",
                index: 0,
                ..
            })
        ),
        "{e:?}"
    );

    // teacher/student class-count mismatch
    let wide = [0.0f32; 8];
    let e = Kd::default()
        .loss_and_grad(&zs, 2, 3, &Targets::teacher(&wide).with_labels(&y), &mut g)
        .unwrap_err();
    assert_eq!(
        e,
        Error::ClassMismatch {
            student: 3,
            teacher: 4
        }
    );
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);

    // length mismatches: student vs batch × width, grad, labels, weights, odd teacher
    let errs = all_errors(&zs, 2, 4, &ok);
    assert_eq!(errs.len(), 6);
    assert!(
        errs.iter()
            .all(|(_, e)| e.kind() == ErrorKind::ShapeMismatch),
        "{errs:?}"
    );
    let e = Kd::default()
        .loss_and_grad(&zs, 2, 3, &ok, &mut g[..5])
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                what: "grad",
                expected: 6,
                got: 5
            }
        ),
        "{e}"
    );
    let e = Kd::default()
        .loss_and_grad(&zs, 2, 3, &Targets::teacher(&zt).with_labels(&[0]), &mut g)
        .unwrap_err();
    assert!(
        matches!(e, Error::LengthMismatch { what: "labels", .. }),
        "{e}"
    );
    let errs = all_errors(&zs, 2, 3, &ok.with_sample_weights(&[1.0]));
    assert_eq!(errs.len(), 6);
    assert!(
        errs.iter()
            .all(|(_, e)| e.kind() == ErrorKind::ShapeMismatch),
        "{errs:?}"
    );
    let e = Mse
        .loss_and_grad(&zs, 2, 3, &Targets::teacher(&zt[..5]), &mut g)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);

    // missing targets, bad weights and options
    let e = Kd::default()
        .loss_and_grad(&zs, 2, 3, &Targets::labels(&y), &mut g)
        .unwrap_err();
    assert_eq!(e, Error::Missing("teacher"));
    let e = Kd::default()
        .loss_and_grad(&zs, 2, 3, &Targets::teacher(&zt), &mut g)
        .unwrap_err();
    assert_eq!(e, Error::Missing("labels"));
    let errs = all_errors(&zs, 2, 3, &ok.with_sample_weights(&[1.0, -0.5]));
    assert_eq!(errs.len(), 6);
    assert!(
        errs.iter()
            .all(|(_, e)| e.kind() == ErrorKind::InvalidInput),
        "{errs:?}"
    );
    for cfg in [
        KdConfig {
            temperature: 0.0,
            ..KdConfig::default()
        },
        KdConfig {
            temperature: f32::NAN,
            ..KdConfig::default()
        },
        KdConfig {
            hard_weight: -1.0,
            ..KdConfig::default()
        },
        KdConfig {
            hard: CrossEntropyConfig {
                label_smoothing: 1.5,
                ..CrossEntropyConfig::default()
            },
            ..KdConfig::default()
        },
        KdConfig {
            hard: CrossEntropyConfig {
                class_weights: Some(vec![1.0; 2]),
                ..CrossEntropyConfig::default()
            },
            ..KdConfig::default()
        },
        KdConfig {
            teacher: TeacherOutput::Probabilities,
            ..KdConfig::default()
        },
        KdConfig {
            teacher: TeacherOutput::LogProbabilities,
            ..KdConfig::default()
        },
    ] {
        let e = Kd::new(cfg.clone()).loss_and_grad(&zs, 2, 3, &ok, &mut g);
        assert!(e.is_err(), "{cfg:?} accepted");
    }
    let e = AttentionTransfer::new(4)
        .loss_and_grad(&zs, 2, 3, &ok, &mut g)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = Kd::default()
        .loss_and_grad(&[], 1, 0, &ok, &mut [])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = Kd::default()
        .loss_and_grad(&zs, usize::MAX, 3, &ok, &mut g)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    // through the core trait the kind is kept
    let sum = WeightedSum::new().with(1.0, Kd::default()).with(0.5, Mse);
    let e = sum
        .loss_and_grad(&zs, 2, 3, &Targets::teacher(&wide).with_labels(&y), &mut g)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    assert!(
        e.to_string()
            .contains("student has 3 classes, the teacher 4"),
        "{e}"
    );
}

#[test]
fn weighted_sum_adds_values_and_gradients() {
    let zs = [0.5f32, 1.0, -1.0, 2.0, 0.0, 1.0];
    let zt = [1.0f32, 0.0, 0.0, 0.5, 0.5, 2.0];
    let t = Targets::teacher(&zt);
    let (mut g1, mut g2, mut gs) = ([0.0f32; 6], [0.0f32; 6], [0.0f32; 6]);
    let kl = SoftLoss::default()
        .loss_and_grad(&zs, 2, 3, &t, &mut g1)
        .expect("kl");
    let mse = Mse.loss_and_grad(&zs, 2, 3, &t, &mut g2).expect("mse");
    let sum = WeightedSum::new()
        .with(0.7, SoftLoss::default())
        .with(0.3, Mse);
    let total = sum.loss_and_grad(&zs, 2, 3, &t, &mut gs).expect("sum");
    assert!((total - (0.7f32 as f64 * kl + 0.3f32 as f64 * mse)).abs() < 1e-12);
    for j in 0..6 {
        assert!((gs[j] - (0.7 * g1[j] + 0.3 * g2[j])).abs() < 1e-6);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    // large enough for the parallel path
    let (b, k) = (64, 1000);
    let zs: Vec<f32> = (0..b * k)
        .map(|i| ((i * 7919) % 1013) as f32 * 0.01 - 5.0)
        .collect();
    let zt: Vec<f32> = (0..b * k)
        .map(|i| ((i * 104_729) % 997) as f32 * 0.012 - 6.0)
        .collect();
    let y: Vec<i64> = (0..b as i64).map(|i| (i * 37) % k as i64).collect();
    let t = Targets::teacher(&zt).with_labels(&y);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut g = vec![0.0f32; b * k];
        let v = pool
            .install(|| Kd::default().loss_and_grad(&zs, b, k, &t, &mut g))
            .expect("kd");
        (v, g)
    };
    let (v1, g1) = run(1);
    let (v2, g2) = run(3);
    assert_eq!(v1, v2);
    assert_eq!(g1, g2);
    // and the fused kernel agrees with the f64 losses it is made of
    let mut g = vec![0.0f32; b * k];
    let ce = CrossEntropy::default()
        .loss_and_grad(&zs, b, k, &t, &mut g)
        .expect("ce");
    let kl = SoftLoss::new(SoftConfig {
        temperature: 2.0,
        scale_by_t_squared: false,
        ..SoftConfig::default()
    })
    .loss_and_grad(&zs, b, k, &t, &mut g)
    .expect("kl");
    assert!((v1.hard - ce).abs() < 1e-6 * ce, "{} vs {ce}", v1.hard);
    assert!((v1.soft - kl).abs() < 1e-6 * kl, "{} vs {kl}", v1.soft);
}

/// `Kd` checks finiteness in its rows' first pass (their maxima, 32 lanes at a time,
/// then the tail): a bad value anywhere, on one thread or many, is reported with its
/// index, for the student and for a teacher given as logits.
#[test]
fn kd_finds_non_finite_logits_anywhere() {
    for (batch, classes) in [(3usize, 70usize), (64, 1000)] {
        let n = batch * classes;
        let zs: Vec<f32> = (0..n).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let zt: Vec<f32> = (0..n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let y: Vec<i64> = (0..batch as i64).map(|i| i % classes as i64).collect();
        let mut g = vec![0.0f32; n];
        // first element, inside the 32-lane part of a middle row, last of the tail
        for index in [0, classes + 40, n - 1] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for teacher_side in [false, true] {
                    let (mut s, mut t) = (zs.clone(), zt.clone());
                    let what = if teacher_side {
                        t[index] = bad;
                        "teacher logits"
                    } else {
                        s[index] = bad;
                        "student logits"
                    };
                    let e = Kd::default().loss_and_grad(
                        &s,
                        batch,
                        classes,
                        &Targets::teacher(&t).with_labels(&y),
                        &mut g,
                    );
                    assert!(
                        matches!(e, Err(Error::NonFinite { what: w, index: i, .. }) if w == what && i == index),
                        "{batch}x{classes}, {what}[{index}] = {bad}: {e:?}"
                    );
                }
            }
        }
        let ok = Kd::default().loss_and_grad(
            &zs,
            batch,
            classes,
            &Targets::teacher(&zt).with_labels(&y),
            &mut g,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }
}
