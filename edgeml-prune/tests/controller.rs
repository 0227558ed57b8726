//! The training-loop controller: schedules, roles, exclusions, scopes, gradients and
//! mask files.

use edgeml_prune::{
    Controller, ControllerConfig, Error, GradualCubic, LayerConfig, Pattern, PolynomialDecay,
    Pruner, Schedule, Scope,
};

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    // distinct magnitudes, alternating signs
    (0..n)
        .map(|i| scale * (i as f32 + 1.0) * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

fn zeros(v: &[f32]) -> usize {
    v.iter().filter(|&&x| x == 0.0).count()
}

#[test]
fn polynomial_schedule_drives_layerwise_masks() {
    let sched = PolynomialDecay::new(0.0, 0.75, 0, 10)
        .unwrap()
        .with_frequency(5)
        .unwrap();
    let layers = vec![
        LayerConfig::weight("fc1.weight", &[4, 10]),
        LayerConfig::bias("fc1.bias", &[4]),
        LayerConfig::weight("fc2.weight", &[2, 4]),
        LayerConfig::norm("bn.scale", &[4]),
    ];
    let mut ctl = Controller::new(sched, ControllerConfig::default(), layers).unwrap();
    let (mut w1, mut b1, mut w2, mut g) =
        (ramp(40, 1.0), ramp(4, 0.01), ramp(8, 1.0), ramp(4, 0.01));
    let mut updated = vec![];
    for step in 0..=12u64 {
        let mut named: Vec<(&str, &mut [f32])> = vec![
            ("fc1.weight", &mut w1),
            ("fc1.bias", &mut b1),
            ("fc2.weight", &mut w2),
            ("bn.scale", &mut g),
        ];
        if ctl.step(step, &mut named).unwrap() {
            updated.push(step);
        }
        if step == 5 {
            // s(5) = 0.75 - 0.75 * 0.5^3 = 0.65625 -> round(0.65625 * 40) = 26
            assert_eq!(zeros(&w1), 26);
            assert_eq!(zeros(&w2), 5);
        }
    }
    assert_eq!(updated, [0, 5, 10]);
    assert_eq!(zeros(&w1), 30);
    assert_eq!(zeros(&w2), 6);
    // The smallest magnitudes went first.
    assert!(w1[..30].iter().all(|&x| x == 0.0) && w1[30..].iter().all(|&x| x != 0.0));
    // Biases and norms were not pruned.
    assert_eq!(zeros(&b1) + zeros(&g), 0);
    let r = ctl.report();
    assert_eq!((r.pruned, r.total), (36, 56));
    assert!(!ctl.is_pruned("fc1.bias") && ctl.is_pruned("fc1.weight"));
}

#[test]
fn weights_revived_by_the_optimizer_are_zeroed_again() {
    let sched = GradualCubic::new(0.5, 0.5, 0, 1, 100).unwrap();
    let mut ctl = Controller::new(
        sched,
        ControllerConfig::default(),
        vec![LayerConfig::weight("w", &[6])],
    )
    .unwrap();
    let mut w = ramp(6, 1.0);
    ctl.step(0, &mut [("w", &mut w)]).unwrap();
    assert_eq!(w, [0.0, 0.0, 0.0, -4.0, 5.0, -6.0]);
    let mut grad = vec![1.0f32; 6];
    ctl.mask_gradients(&mut [("w", &mut grad)]).unwrap();
    assert_eq!(grad, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    w.iter_mut().for_each(|x| *x += 10.0);
    assert!(!ctl.step(1, &mut [("w", &mut w)]).unwrap());
    assert_eq!(w, [0.0, 0.0, 0.0, 6.0, 15.0, 4.0]);
}

#[test]
fn gradual_cubic_follows_zhu_gupta() {
    // s_i = 0, s_f = 0.8, t0 = 0, n = 4, dt = 10: s_t = 0.8 - 0.8 (1 - t/40)^3
    let s = GradualCubic::new(0.0, 0.8, 0, 4, 10).unwrap();
    let cases = [
        (0, 0.0),
        (10, 0.4625),
        (15, 0.4625),
        (20, 0.7),
        (30, 0.7875),
        (40, 0.8),
        (99, 0.8),
    ];
    for (t, want) in cases {
        assert!(
            (s.sparsity(t) - want).abs() < 1e-6,
            "step {t}: {}",
            s.sparsity(t)
        );
    }
    let pruned: Vec<u64> = (0..60).filter(|&t| s.should_prune(t)).collect();
    assert_eq!(pruned, [0, 10, 20, 30, 40]);
    let late = GradualCubic::new(0.1, 0.8, 7, 2, 3).unwrap();
    assert_eq!(late.sparsity(3), 0.1);
    assert_eq!(
        (0..20)
            .filter(|&t| late.should_prune(t))
            .collect::<Vec<_>>(),
        [7, 10, 13]
    );
}

#[test]
fn global_scope_exclusions_and_min_size() {
    let config = ControllerConfig {
        scope: Scope::Global,
        min_size: 5,
        exclude: vec!["head".into()],
        ..ControllerConfig::default()
    };
    let layers = vec![
        LayerConfig::weight("small", &[2, 2]),
        LayerConfig::weight("a", &[10]),
        LayerConfig::weight("b", &[10]),
        LayerConfig::weight("head", &[3, 4]),
        LayerConfig::bias("bias", &[10]).prune(true),
    ];
    let sched = edgeml_prune::ConstantSparsity::new(0.5, 0, None, 1).unwrap();
    let mut ctl = Controller::new(sched, config, layers).unwrap();
    let mut a = ramp(10, 1.0); // 1..10
    let mut b = ramp(10, 0.1); // 0.1..1.0
    let mut bias = ramp(10, 100.0);
    let (mut small, mut head) = (vec![0.001f32; 4], vec![0.001f32; 12]);
    let mut named: Vec<(&str, &mut [f32])> = vec![
        ("small", &mut small),
        ("a", &mut a),
        ("b", &mut b),
        ("head", &mut head),
        ("bias", &mut bias),
    ];
    ctl.step(0, &mut named).unwrap();
    // 30 pooled weights (a, b and the bias asked to be pruned), 15 pruned: the 10 of
    // b (0.1..1.0) and the 5 smallest of a (1..5); the bias (100..1000) survives.
    assert_eq!(zeros(&b), 10);
    assert_eq!(zeros(&a), 5);
    assert_eq!(zeros(&bias), 0);
    assert_eq!(
        zeros(&small) + zeros(&head),
        0,
        "small/excluded layers stay dense"
    );
    assert!(!ctl.is_pruned("small") && !ctl.is_pruned("head"));
}

#[test]
fn naming_errors() {
    let sched = || edgeml_prune::ConstantSparsity::new(0.5, 0, None, 1).unwrap();
    let one = || vec![LayerConfig::weight("w", &[4])];
    let cfg = ControllerConfig {
        exclude: vec!["nope".into()],
        ..Default::default()
    };
    assert_eq!(
        Controller::new(sched(), cfg, one()).err(),
        Some(Error::UnknownLayer("nope".into()))
    );
    let dup = vec![
        LayerConfig::weight("w", &[4]),
        LayerConfig::weight("w", &[2]),
    ];
    assert!(matches!(
        Controller::new(sched(), ControllerConfig::default(), dup),
        Err(Error::DuplicateLayer(_))
    ));
    let only_bias = vec![LayerConfig::bias("b", &[4])];
    assert!(matches!(
        Controller::new(sched(), ControllerConfig::default(), only_bias),
        Err(Error::Empty(_))
    ));
    assert!(
        Controller::new(
            sched(),
            ControllerConfig::default(),
            vec![LayerConfig::weight("e", &[0])]
        )
        .is_err()
    );
    let mut ctl = Controller::new(sched(), ControllerConfig::default(), one()).unwrap();
    let mut w = vec![1.0f32, 2.0, 3.0, 4.0];
    let mut x = vec![1.0f32; 4];
    assert_eq!(
        ctl.step(0, &mut [("x", &mut x)]).unwrap_err(),
        Error::UnknownLayer("x".into())
    );
    assert_eq!(
        ctl.step(0, &mut []).unwrap_err(),
        Error::UnknownLayer("w".into())
    );
    assert!(matches!(
        ctl.step(0, &mut [("w", &mut w[..3])]),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut nan = vec![1.0, f32::NAN, 2.0, 3.0];
    let e = ctl.step(0, &mut [("w", &mut nan)]).unwrap_err();
    assert_eq!(
        e,
        Error::NaN {
            what: "w".into(),
            index: 1
        }
    );
    assert_eq!(nan[0], 1.0, "failed step leaves weights alone");
    assert!(ctl.update_masks(1.0, &[("w", &w)]).is_err());
}

/// A user pruner: prunes the first weights, whatever their magnitude.
struct FirstK;

#[derive(Debug)]
struct FirstKError;

impl std::fmt::Display for FirstKError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("first-k failed")
    }
}

impl edgeml_prune::HasErrorKind for FirstKError {
    fn kind(&self) -> edgeml_prune::ErrorKind {
        edgeml_prune::ErrorKind::Unsupported
    }
}

impl Pruner for FirstK {
    type Error = FirstKError;
    fn keep_mask(
        &self,
        w: &[f32],
        _: &[usize],
        s: f64,
        keep: &mut [bool],
    ) -> Result<(), FirstKError> {
        if w.len() > 8 {
            return Err(FirstKError);
        }
        let k = (s * w.len() as f64).round() as usize;
        keep.iter_mut().enumerate().for_each(|(i, f)| *f = i >= k);
        Ok(())
    }
}

#[test]
fn custom_pruners_patterns_and_mask_files() {
    let sched = edgeml_prune::ConstantSparsity::new(0.5, 0, None, 1).unwrap();
    let layers = vec![
        LayerConfig::weight("custom", &[4]).pruner(FirstK),
        LayerConfig::weight("nm", &[2, 4]).pattern(Pattern::keep_of_group(1, 2, 1)),
        LayerConfig::weight("big", &[9]).pruner(FirstK),
    ];
    let cfg = ControllerConfig {
        exclude: vec!["big".into()],
        ..Default::default()
    };
    let mut ctl = Controller::new(sched, cfg, layers).unwrap();
    let mut c = vec![9.0f32, 8.0, 1.0, 2.0];
    let mut nm = vec![1.0f32, 2.0, 4.0, 3.0, -5.0, 5.0, 0.0, 0.0];
    ctl.step(0, &mut [("custom", &mut c), ("nm", &mut nm)])
        .unwrap();
    assert_eq!(c, [0.0, 0.0, 1.0, 2.0]);
    // keep 1 of 2; ties (-5/5, 0/0) keep the higher index
    assert_eq!(nm, [0.0, 2.0, 4.0, 0.0, 0.0, 5.0, 0.0, 0.0]);

    let dir = std::env::temp_dir().join(format!("edgeml-prune-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("masks.bin");
    ctl.save_masks(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // header 16 + ("custom": 4+6+8+1) + ("nm": 4+2+8+1)
    assert_eq!(bytes.len(), 16 + 19 + 15);
    let saved: Vec<bool> = ctl.mask("nm").unwrap().to_vec();

    let sched2 = edgeml_prune::ConstantSparsity::new(0.5, 0, None, 1).unwrap();
    let layers2 = vec![
        LayerConfig::weight("custom", &[4]),
        LayerConfig::weight("nm", &[2, 4]),
        LayerConfig::weight("big", &[9]),
    ];
    let cfg2 = ControllerConfig {
        exclude: vec!["big".into()],
        ..Default::default()
    };
    let mut back = Controller::new(sched2, cfg2, layers2).unwrap();
    back.load_masks(&path).unwrap();
    assert_eq!(back.mask("nm").unwrap(), saved.as_slice());
    assert_eq!(back.mask("custom").unwrap(), [false, false, true, true]);

    // A controller with a different set of pruned layers refuses the file.
    let sched3 = edgeml_prune::ConstantSparsity::new(0.5, 0, None, 1).unwrap();
    let mut other = Controller::new(
        sched3,
        ControllerConfig::default(),
        vec![
            LayerConfig::weight("custom", &[4]),
            LayerConfig::weight("nm", &[2, 4]),
            LayerConfig::weight("big", &[9]),
        ],
    )
    .unwrap();
    assert_eq!(
        other.load_masks(&path).unwrap_err(),
        Error::UnknownLayer("big".into())
    );
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(back.load_masks(&path), Err(Error::MaskFormat(_))));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(back.load_masks(&path), Err(Error::Io { .. })));

    // Errors of a user pruner keep their kind.
    let sched4 = edgeml_prune::ConstantSparsity::new(0.5, 0, None, 1).unwrap();
    let mut bad = Controller::new(
        sched4,
        ControllerConfig::default(),
        vec![LayerConfig::weight("big", &[9]).pruner(FirstK)],
    )
    .unwrap();
    let e = bad.step(0, &mut [("big", &mut [1.0; 9])]).unwrap_err();
    assert_eq!(e.kind(), edgeml_prune::ErrorKind::Unsupported);
    assert!(e.to_string().contains("big"));
}
