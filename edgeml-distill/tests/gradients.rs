//! Property tests: every loss's value against a direct f64 implementation of its
//! formula, and its gradient against central finite differences of that f64 reference.

use edgeml_distill::{
    AttentionTransfer, CosineEmbedding, CrossEntropy, CrossEntropyConfig, Divergence, Kd, KdConfig,
    Mse, SoftConfig, SoftLoss, Targets, TeacherOutput,
};
use proptest::prelude::*;

fn log_softmax(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let lse = z.iter().map(|&x| ((x - m) / t).exp()).sum::<f64>().ln();
    z.iter().map(|&x| (x - m) / t - lse).collect()
}

/// F.cross_entropy(weight=cw, label_smoothing=eps), no ignored labels, with sample
/// weights multiplying each sample's weight.
fn ce_ref(z: &[f64], k: usize, y: &[i64], cw: &[f64], eps: f64, sw: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (i, row) in z.chunks(k).enumerate() {
        let lp = log_softmax(row, 1.0);
        let yi = y[i] as usize;
        let smooth: f64 = lp.iter().zip(cw).map(|(l, w)| w * l).sum();
        num -= sw[i] * ((1.0 - eps) * cw[yi] * lp[yi] + eps / k as f64 * smooth);
        den += sw[i] * cw[yi];
    }
    num / den
}

fn divergence_ref(zs: &[f64], zt: &[f64], k: usize, t: f64, d: Divergence, sw: &[f64]) -> f64 {
    let mut num = 0.0;
    for (i, (a, b)) in zs.chunks(k).zip(zt.chunks(k)).enumerate() {
        let (lq, lp) = (log_softmax(a, t), log_softmax(b, t));
        let row: f64 = (0..k)
            .map(|j| {
                let (p, q) = (lp[j].exp(), lq[j].exp());
                let m = 0.5 * (p + q);
                match d {
                    Divergence::ForwardKl => p * (lp[j] - lq[j]),
                    Divergence::ReverseKl => q * (lq[j] - lp[j]),
                    Divergence::JensenShannon => 0.5 * p * (p / m).ln() + 0.5 * q * (q / m).ln(),
                    Divergence::SoftCrossEntropy => -p * lq[j],
                    _ => unreachable!(),
                }
            })
            .sum();
        num += sw[i] * row;
    }
    num / sw.iter().sum::<f64>()
}

fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-5 * x[i].abs().max(1.0);
            xs[i] = x[i] + h;
            let up = f(&xs);
            xs[i] = x[i] - h;
            let down = f(&xs);
            xs[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn check(
    name: &str,
    loss: f64,
    grad: &[f32],
    want_loss: f64,
    want_grad: &[f64],
    floor: f64,
    grad_floor: f64,
) -> Result<(), TestCaseError> {
    // The loss comes from f32 logits, so a divergence between nearly equal distributions
    // (loss ~1e-8) carries an absolute cancellation error of order f32 epsilon times the
    // log-probabilities, multiplied by any weight on that term (`floor`); beyond it the
    // relative bound is 1e-5.
    prop_assert!(
        (loss - want_loss).abs() <= 1e-5 * want_loss.abs() + floor,
        "{name}: loss {loss} vs reference {want_loss}"
    );
    // The gradient is held to 1e-4 of its largest entry, plus `grad_floor` where it is
    // a difference of terms computed in f32 that can cancel (KD's hard and soft parts).
    let scale = want_grad.iter().fold(1e-6f64, |m, x| m.max(x.abs()));
    for (j, (&g, &w)) in grad.iter().zip(want_grad).enumerate() {
        prop_assert!(
            (f64::from(g) - w).abs() <= 1e-4 * scale + grad_floor,
            "{name}: grad[{j}] {g} vs finite differences {w}"
        );
    }
    Ok(())
}

fn up(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// (batch, classes, student, teacher, labels, sample weights)
fn batch() -> impl Strategy<Value = (usize, usize, Vec<f32>, Vec<f32>, Vec<i64>, Vec<f32>)> {
    (1usize..5, 2usize..12, 0.1f32..8.0).prop_flat_map(|(b, k, scale)| {
        (
            Just(b),
            Just(k),
            prop::collection::vec(-scale..scale, b * k),
            prop::collection::vec(-scale..scale, b * k),
            prop::collection::vec(0..k as i64, b),
            prop::collection::vec(0.1f32..2.0, b),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn kd_gradient(
        (b, k, zs, zt, y, sw) in batch(),
        t in 0.5f32..20.0,
        wh in 0.0f32..1.0,
        ws in 0.0f32..1.0,
        eps in prop_oneof![Just(0.0f32), 0.0f32..0.5],
        t2 in any::<bool>(),
        weighted in any::<bool>(),
    ) {
        let sw: Vec<f32> = if weighted { sw } else { vec![1.0; b] };
        let kd = Kd::new(KdConfig {
            temperature: t, hard_weight: wh, soft_weight: ws, scale_by_t_squared: t2,
            hard: CrossEntropyConfig { label_smoothing: eps, ..CrossEntropyConfig::default() },
            ..KdConfig::default()
        });
        let mut g = vec![0.0f32; b * k];
        let v = kd.loss_and_grad(&zs, b, k, &Targets::teacher(&zt).with_labels(&y).with_sample_weights(&sw), &mut g)
            .expect("kd");
        let (zt64, sw64, cw) = (up(&zt), up(&sw), vec![1.0; k]);
        let t64 = f64::from(t);
        let scale = if t2 { t64 * t64 } else { 1.0 };
        let f = |z: &[f64]| {
            f64::from(wh) * ce_ref(z, k, &y, &cw, f64::from(eps), &sw64)
                + f64::from(ws) * scale * divergence_ref(z, &zt64, k, t64, Divergence::ForwardKl, &sw64)
        };
        let x = up(&zs);
        // Each part's gradient entry is its weight times a difference of probabilities
        // held in f32 (absolute error ~ f32 epsilon); when the hard and soft parts nearly
        // cancel, that error is what remains, so it bounds the gradient's error from below.
        let parts = f64::from(wh) + f64::from(ws) * scale / t64;
        let grad_floor = 4.0 * f64::from(f32::EPSILON) * parts;
        check("kd", v.total, &g, f(&x), &fd(&f, &x), 1e-6 * (1.0 + f64::from(ws) * scale), grad_floor)?;
    }

    #[test]
    fn cross_entropy_gradient(
        (b, k, zs, _zt, y, sw) in batch(),
        eps in 0.0f32..1.0,
        cw in prop::collection::vec(0.1f32..3.0, 12),
    ) {
        let cw = cw[..k].to_vec();
        let ce = CrossEntropy::new(CrossEntropyConfig {
            class_weights: Some(cw.clone()), label_smoothing: eps, ..CrossEntropyConfig::default()
        });
        let mut g = vec![0.0f32; b * k];
        let loss = ce.loss_and_grad(&zs, b, k, &Targets::labels(&y).with_sample_weights(&sw), &mut g).expect("ce");
        let (cw64, sw64) = (up(&cw), up(&sw));
        let f = |z: &[f64]| ce_ref(z, k, &y, &cw64, f64::from(eps), &sw64);
        let x = up(&zs);
        check("ce", loss, &g, f(&x), &fd(&f, &x), 1e-6, 0.0)?;
    }

    #[test]
    fn soft_gradients(
        (b, k, zs, zt, _y, sw) in batch(),
        t in 0.5f32..20.0,
        d in prop_oneof![
            Just(Divergence::ForwardKl), Just(Divergence::ReverseKl),
            Just(Divergence::JensenShannon), Just(Divergence::SoftCrossEntropy)
        ],
    ) {
        let loss = SoftLoss::new(SoftConfig {
            divergence: d, temperature: t, scale_by_t_squared: false, teacher: TeacherOutput::Logits,
        });
        let mut g = vec![0.0f32; b * k];
        let v = loss.loss_and_grad(&zs, b, k, &Targets::teacher(&zt).with_sample_weights(&sw), &mut g).expect("soft");
        let (zt64, sw64) = (up(&zt), up(&sw));
        let f = |z: &[f64]| divergence_ref(z, &zt64, k, f64::from(t), d, &sw64);
        let x = up(&zs);
        check(&format!("{d:?}"), v, &g, f(&x), &fd(&f, &x), 1e-6, 0.0)?;
    }

    #[test]
    fn feature_gradients(
        (b, k, zs, zt, _y, sw) in batch(),
        hw in 1usize..4,
    ) {
        let (zt64, sw64) = (up(&zt), up(&sw));
        let s: f64 = sw64.iter().sum();
        let x = up(&zs);
        let t = Targets::teacher(&zt).with_sample_weights(&sw);
        let mut g = vec![0.0f32; b * k];

        let v = Mse.loss_and_grad(&zs, b, k, &t, &mut g).expect("mse");
        let f = |z: &[f64]| {
            z.chunks(k).zip(zt64.chunks(k)).zip(&sw64)
                .map(|((a, c), w)| w * a.iter().zip(c).map(|(p, q)| (p - q) * (p - q)).sum::<f64>())
                .sum::<f64>() / (s * k as f64)
        };
        check("mse", v, &g, f(&x), &fd(&f, &x), 1e-6, 0.0)?;

        let v = CosineEmbedding.loss_and_grad(&zs, b, k, &t, &mut g).expect("cosine");
        let f = |z: &[f64]| {
            z.chunks(k).zip(zt64.chunks(k)).zip(&sw64)
                .map(|((a, c), w)| {
                    let dot: f64 = a.iter().zip(c).map(|(p, q)| p * q).sum();
                    let na: f64 = a.iter().map(|p| p * p).sum::<f64>() + 1e-12;
                    let nc: f64 = c.iter().map(|q| q * q).sum::<f64>() + 1e-12;
                    w * (1.0 - dot / (na * nc).sqrt())
                })
                .sum::<f64>() / s
        };
        check("cosine", v, &g, f(&x), &fd(&f, &x), 1e-6, 0.0)?;

        // attention transfer over `k` channels of `hw` positions (teacher: same shape)
        let w = k * hw;
        let xs: Vec<f32> = zs.iter().cycle().take(b * w).enumerate().map(|(i, v)| v + 0.01 * i as f32).collect();
        let ys: Vec<f32> = zt.iter().cycle().take(b * w).copied().collect();
        let mut g = vec![0.0f32; b * w];
        let v = AttentionTransfer::new(hw)
            .loss_and_grad(&xs, b, w, &Targets::teacher(&ys).with_sample_weights(&sw), &mut g)
            .expect("at");
        let ys64 = up(&ys);
        let at = |r: &[f64]| {
            let a: Vec<f64> = (0..hw).map(|p| (0..k).map(|c| r[c * hw + p].powi(2)).sum::<f64>() / k as f64).collect();
            let n = a.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            a.into_iter().map(|v| v / n).collect::<Vec<f64>>()
        };
        let f = |z: &[f64]| {
            z.chunks(w).zip(ys64.chunks(w)).zip(&sw64)
                .map(|((a, c), wt)| wt * at(a).iter().zip(at(c)).map(|(p, q)| (p - q) * (p - q)).sum::<f64>())
                .sum::<f64>() / (s * hw as f64)
        };
        let x = up(&xs);
        check("attention", v, &g, f(&x), &fd(&f, &x), 1e-6, 0.0)?;
    }
}
