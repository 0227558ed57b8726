//! Losses and gradients against numpy replications of PyTorch's definitions
//! (tests/fixtures/distill/losses.json, written by scripts/make_distill_fixtures.py).
//! Losses to 1e-6 relative; gradients to 1e-6 of the largest gradient entry.

mod common;
use common::{Json, fixture, grad_error, loss_close};
use edgeml_distill::{
    AttentionTransfer, CosineEmbedding, CrossEntropy, CrossEntropyConfig, Divergence, Kd, KdConfig,
    Mse, SoftConfig, SoftLoss, Targets, TeacherOutput,
};

const REL: f64 = 1e-6;

fn teacher_kind(s: &str) -> TeacherOutput {
    match s {
        "logits" => TeacherOutput::Logits,
        "probabilities" => TeacherOutput::Probabilities,
        "log_probabilities" => TeacherOutput::LogProbabilities,
        _ => panic!("teacher kind {s}"),
    }
}

/// Checks one case and records a failure message.
fn record(
    failures: &mut Vec<String>,
    name: &str,
    what: &str,
    got: f64,
    want: f64,
    grad: &[f32],
    c: &Json,
) {
    if !loss_close(got, want, REL) {
        failures.push(format!("{name}: {what} {got:e} vs {want:e}"));
    }
    let e = grad_error(grad, &c.get("grad").f64s());
    if e > REL {
        failures.push(format!("{name}: gradient error {e:e}"));
    }
}

#[test]
fn cross_entropy_matches_pytorch() {
    let f = fixture("losses.json");
    let mut failures = vec![];
    let cases = f.get("ce").arr();
    assert!(cases.len() >= 7);
    for c in cases {
        let name = c.get("name").str();
        let (b, k) = (c.get("batch").usize(), c.get("classes").usize());
        let z = c.get("student").f32s();
        let labels = c.get("labels").i64s();
        let sw = c.get("sample_weights").opt_f32s();
        let ce = CrossEntropy::new(CrossEntropyConfig {
            class_weights: c.get("class_weights").opt_f32s(),
            ignore_index: c.get("ignore_index").f64() as i64,
            label_smoothing: c.get("label_smoothing").f64() as f32,
        });
        let mut t = Targets::labels(&labels);
        if let Some(w) = &sw {
            t = t.with_sample_weights(w);
        }
        let mut g = vec![f32::NAN; b * k];
        let got = ce.loss_and_grad(&z, b, k, &t, &mut g).expect(name);
        record(&mut failures, name, "loss", got, c.get("loss").f64(), &g, c);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn kd_matches_pytorch() {
    let f = fixture("losses.json");
    let mut failures = vec![];
    let cases = f.get("kd").arr();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c.get("name").str();
        let (b, k) = (c.get("batch").usize(), c.get("classes").usize());
        let zs = c.get("student").f32s();
        let zt = c.get("teacher").f32s();
        let labels = c.get("labels").i64s();
        let sw = c.get("sample_weights").opt_f32s();
        let kd = Kd::new(KdConfig {
            temperature: c.get("temperature").f64() as f32,
            hard_weight: c.get("hard_weight").f64() as f32,
            soft_weight: c.get("soft_weight").f64() as f32,
            scale_by_t_squared: c.get("t_squared").bool(),
            teacher: teacher_kind(c.get("teacher_kind").str()),
            hard: CrossEntropyConfig {
                class_weights: c.get("class_weights").opt_f32s(),
                label_smoothing: c.get("label_smoothing").f64() as f32,
                ..CrossEntropyConfig::default()
            },
        });
        let mut t = Targets::teacher(&zt).with_labels(&labels);
        if let Some(w) = &sw {
            t = t.with_sample_weights(w);
        }
        let mut g = vec![f32::NAN; b * k];
        let v = kd.loss_and_grad(&zs, b, k, &t, &mut g).expect(name);
        record(
            &mut failures,
            name,
            "total",
            v.total,
            c.get("loss").f64(),
            &g,
            c,
        );
        for (what, got, want) in [
            ("hard", v.hard, c.get("hard").f64()),
            ("soft", v.soft, c.get("soft").f64()),
        ] {
            if !loss_close(got, want, REL) {
                failures.push(format!("{name}: {what} {got:e} vs {want:e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn soft_divergences_match_pytorch() {
    let f = fixture("losses.json");
    let mut failures = vec![];
    let cases = f.get("soft").arr();
    assert!(cases.len() >= 12);
    for c in cases {
        let name = c.get("name").str();
        let (b, k) = (c.get("batch").usize(), c.get("classes").usize());
        let zs = c.get("student").f32s();
        let zt = c.get("teacher").f32s();
        let sw = c.get("sample_weights").opt_f32s();
        let loss = SoftLoss::new(SoftConfig {
            divergence: match c.get("divergence").str() {
                "forward_kl" => Divergence::ForwardKl,
                "reverse_kl" => Divergence::ReverseKl,
                "js" => Divergence::JensenShannon,
                "soft_ce" => Divergence::SoftCrossEntropy,
                d => panic!("divergence {d}"),
            },
            temperature: c.get("temperature").f64() as f32,
            scale_by_t_squared: c.get("t_squared").bool(),
            teacher: teacher_kind(c.get("teacher_kind").str()),
        });
        let mut t = Targets::teacher(&zt);
        if let Some(w) = &sw {
            t = t.with_sample_weights(w);
        }
        let mut g = vec![f32::NAN; b * k];
        let got = loss.loss_and_grad(&zs, b, k, &t, &mut g).expect(name);
        record(&mut failures, name, "loss", got, c.get("loss").f64(), &g, c);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn feature_losses_match_pytorch() {
    let f = fixture("losses.json");
    let mut failures = vec![];
    let cases = f.get("feature").arr();
    assert!(cases.len() >= 6);
    for c in cases {
        let name = c.get("name").str();
        let (b, w) = (c.get("batch").usize(), c.get("width").usize());
        let x = c.get("student").f32s();
        let y = c.get("teacher").f32s();
        let sw = c.get("sample_weights").opt_f32s();
        let mut t = Targets::teacher(&y);
        if let Some(s) = &sw {
            t = t.with_sample_weights(s);
        }
        let mut g = vec![f32::NAN; b * w];
        let got = match c.get("loss_kind").str() {
            "mse" => Mse.loss_and_grad(&x, b, w, &t, &mut g),
            "cosine" => CosineEmbedding.loss_and_grad(&x, b, w, &t, &mut g),
            "attention" => {
                AttentionTransfer::new(c.get("spatial").usize()).loss_and_grad(&x, b, w, &t, &mut g)
            }
            k => panic!("loss kind {k}"),
        }
        .expect(name);
        record(&mut failures, name, "loss", got, c.get("loss").f64(), &g, c);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
