//! Gradual magnitude pruning inside a plain Rust training loop: a 64-128-10 MLP on the
//! bundled digits images, pruned to 90 % of its weights with TF-MOT's
//! `PolynomialDecay` schedule while it keeps training, compared with the dense model
//! and with one-shot pruning without retraining.
//!
//! ```text
//! cargo run --release -p edgeml-examples --example prune_mlp
//! ```
//!
//! Only the held-out split of scikit-learn's digits set is committed
//! (`tests/fixtures/digits/x_test.npy`, 450 images of 8×8, `y_test.npy`), so this example
//! splits it again: a seeded shuffle, 300 images to train on and 150 held out for the
//! accuracies printed. Biases are never pruned.

use anyhow::{Context, ensure};
use edgeml::prune::{
    Controller, ControllerConfig, LayerConfig, PolynomialDecay, Schedule, SparsityReport,
};
use ndarray::{ArrayD, Ix1};
use ndarray_npy::read_npy;
use std::path::PathBuf;
use std::time::Instant;

const IN: usize = 64;
const HID: usize = 128;
const OUT: usize = 10;
const BATCH: usize = 30;

/// SplitMix64: a small deterministic generator for the shuffle and the init.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[derive(Clone)]
struct Mlp {
    w1: Vec<f32>, // [HID, IN]
    b1: Vec<f32>,
    w2: Vec<f32>, // [OUT, HID]
    b2: Vec<f32>,
}

impl Mlp {
    fn new(rng: &mut Rng) -> Self {
        let mut init = |n: usize, fan_in: usize| -> Vec<f32> {
            let a = (6.0 / fan_in as f32).sqrt();
            (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * a).collect()
        };
        Self {
            w1: init(HID * IN, IN),
            b1: vec![0.0; HID],
            w2: init(OUT * HID, HID),
            b2: vec![0.0; OUT],
        }
    }

    fn forward(&self, x: &[f32], h: &mut [f32], logits: &mut [f32]) {
        for (j, hj) in h.iter_mut().enumerate() {
            let row = &self.w1[j * IN..(j + 1) * IN];
            let s: f32 = row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + self.b1[j];
            *hj = s.max(0.0);
        }
        for (k, lk) in logits.iter_mut().enumerate() {
            let row = &self.w2[k * HID..(k + 1) * HID];
            *lk = row.iter().zip(h.iter()).map(|(w, v)| w * v).sum::<f32>() + self.b2[k];
        }
    }

    fn accuracy(&self, xs: &[Vec<f32>], ys: &[usize]) -> f64 {
        let (mut h, mut l) = (vec![0.0; HID], vec![0.0; OUT]);
        let ok = xs
            .iter()
            .zip(ys)
            .filter(|(x, y)| {
                self.forward(x, &mut h, &mut l);
                argmax(&l) == **y
            })
            .count();
        ok as f64 / ys.len() as f64
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// Gradients of the batch-mean cross-entropy.
struct Grads {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

fn gradients(m: &Mlp, xs: &[&Vec<f32>], ys: &[usize], g: &mut Grads) {
    for v in [&mut g.w1, &mut g.b1, &mut g.w2, &mut g.b2] {
        v.fill(0.0);
    }
    let (mut h, mut l, mut dh) = (vec![0.0; HID], vec![0.0; OUT], vec![0.0; HID]);
    let scale = 1.0 / xs.len() as f32;
    for (x, &y) in xs.iter().zip(ys) {
        m.forward(x, &mut h, &mut l);
        let mx = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let z: f32 = l.iter().map(|v| (v - mx).exp()).sum();
        dh.fill(0.0);
        for (k, &lk) in l.iter().enumerate() {
            let d = ((lk - mx).exp() / z - f32::from(u8::from(k == y))) * scale;
            g.b2[k] += d;
            for j in 0..HID {
                g.w2[k * HID + j] += d * h[j];
                dh[j] += d * m.w2[k * HID + j];
            }
        }
        for j in 0..HID {
            if h[j] > 0.0 {
                g.b1[j] += dh[j];
                for i in 0..IN {
                    g.w1[j * IN + i] += dh[j] * x[i];
                }
            }
        }
    }
}

/// Plain SGD with momentum (lr 0.05, momentum 0.9, batches of 30); `before_update`
/// sees each batch's gradients (to mask them), `after_update(step, model)` runs after
/// each update (to prune and re-apply the masks).
fn train(
    m: &mut Mlp,
    xs: &[Vec<f32>],
    ys: &[usize],
    epochs: usize,
    rng: &mut Rng,
    mut before_update: impl FnMut(&mut Grads) -> anyhow::Result<()>,
    mut after_update: impl FnMut(u64, &mut Mlp) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (lr, mu) = (0.05f32, 0.9f32);
    let mut g = Grads {
        w1: vec![0.0; HID * IN],
        b1: vec![0.0; HID],
        w2: vec![0.0; OUT * HID],
        b2: vec![0.0; OUT],
    };
    let mut vel = Grads {
        w1: vec![0.0; HID * IN],
        b1: vec![0.0; HID],
        w2: vec![0.0; OUT * HID],
        b2: vec![0.0; OUT],
    };
    let mut order: Vec<usize> = (0..xs.len()).collect();
    let mut step = 0u64;
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for batch in order.chunks(BATCH) {
            let bx: Vec<&Vec<f32>> = batch.iter().map(|&i| &xs[i]).collect();
            let by: Vec<usize> = batch.iter().map(|&i| ys[i]).collect();
            gradients(m, &bx, &by, &mut g);
            before_update(&mut g)?;
            for (p, (v, d)) in [
                (&mut m.w1, (&mut vel.w1, &g.w1)),
                (&mut m.b1, (&mut vel.b1, &g.b1)),
                (&mut m.w2, (&mut vel.w2, &g.w2)),
                (&mut m.b2, (&mut vel.b2, &g.b2)),
            ] {
                for ((p, v), d) in p.iter_mut().zip(v.iter_mut()).zip(d.iter()) {
                    *v = mu * *v + d;
                    *p -= lr * *v;
                }
            }
            after_update(step, m)?;
            step += 1;
        }
    }
    Ok(())
}

fn layers() -> Vec<LayerConfig> {
    vec![
        LayerConfig::weight("fc1.weight", &[HID, IN]),
        LayerConfig::bias("fc1.bias", &[HID]),
        LayerConfig::weight("fc2.weight", &[OUT, HID]),
        LayerConfig::bias("fc2.bias", &[OUT]),
    ]
}

fn weight_sparsity(r: &SparsityReport) -> f64 {
    let (p, t) = r
        .layers
        .iter()
        .filter(|l| l.0.ends_with("weight"))
        .fold((0, 0), |a, l| (a.0 + l.1, a.1 + l.2));
    p as f64 / t as f64
}

fn main() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digits");
    let x: ArrayD<f32> = read_npy(dir.join("x_test.npy")).context("x_test.npy")?;
    let y: ndarray::Array<i64, Ix1> = read_npy(dir.join("y_test.npy")).context("y_test.npy")?;
    let n = y.len();
    ensure!(x.len() == n * IN, "expected {n} images of 8x8");
    let flat = x.into_raw_vec_and_offset().0;
    let mut rng = Rng(2024);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        idx.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let (train_i, test_i) = idx.split_at(300);
    let pick = |ids: &[usize]| -> (Vec<Vec<f32>>, Vec<usize>) {
        ids.iter()
            .map(|&i| (flat[i * IN..(i + 1) * IN].to_vec(), y[i] as usize))
            .unzip()
    };
    let ((xtr, ytr), (xte, yte)) = (pick(train_i), pick(test_i));
    println!(
        "digits: {} train / {} held out (re-split of the committed test set)",
        ytr.len(),
        yte.len()
    );

    // 1. Dense.
    let mut dense = Mlp::new(&mut rng);
    train(
        &mut dense,
        &xtr,
        &ytr,
        60,
        &mut rng,
        |_| Ok(()),
        |_, _| Ok(()),
    )?;
    let acc_dense = dense.accuracy(&xte, &yte);

    // 2. One-shot magnitude pruning of the dense model, no retraining.
    let mut rows = vec![("dense".to_owned(), 0.0, acc_dense)];
    for s in [0.8, 0.9] {
        let sched = PolynomialDecay::new(0.0, s, 0, 1)?;
        let mut ctl = Controller::new(sched, ControllerConfig::default(), layers())?;
        let mut m = dense.clone();
        ctl.update_masks(s, &[("fc1.weight", &m.w1), ("fc2.weight", &m.w2)])?;
        ctl.apply(&mut [("fc1.weight", &mut m.w1), ("fc2.weight", &mut m.w2)])?;
        rows.push((
            format!("one-shot {:.0} %, no retraining", s * 100.0),
            weight_sparsity(&ctl.report()),
            m.accuracy(&xte, &yte),
        ));
    }

    // 3. Gradual: keep training the dense model while PolynomialDecay raises the
    //    sparsity from 0 to 90 % over 30 epochs (masks updated every epoch), then 20
    //    more epochs at 90 %.
    let steps_per_epoch = ytr.len().div_ceil(BATCH) as u64;
    let sched =
        PolynomialDecay::new(0.0, 0.9, 0, 30 * steps_per_epoch)?.with_frequency(steps_per_epoch)?;
    let mut ctl = Controller::new(sched, ControllerConfig::default(), layers())?;
    let mut m = dense.clone();
    let mut trace = vec![];
    let ctl_cell = std::cell::RefCell::new(&mut ctl);
    train(
        &mut m,
        &xtr,
        &ytr,
        50,
        &mut rng,
        |g| {
            let c = ctl_cell.borrow();
            c.mask_gradients(&mut [("fc1.weight", &mut g.w1), ("fc2.weight", &mut g.w2)])?;
            Ok(())
        },
        |step, model| {
            let mut c = ctl_cell.borrow_mut();
            let updated = c.step(
                step,
                &mut [("fc1.weight", &mut model.w1), ("fc2.weight", &mut model.w2)],
            )?;
            if updated && (step / steps_per_epoch).is_multiple_of(5) {
                trace.push((
                    step,
                    c.schedule().sparsity(step),
                    model.accuracy(&xte, &yte),
                ));
            }
            Ok(())
        },
    )?;
    let report = ctl.report();
    rows.push((
        "gradual to 90 % with retraining".to_owned(),
        weight_sparsity(&report),
        m.accuracy(&xte, &yte),
    ));

    // Masks survive a save/restore through the documented bit-packed file.
    let tmp = std::env::temp_dir().join(format!("edgeml-prune-mlp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    ctl.save_masks(tmp.join("masks.bin"))?;
    let mut restored = Controller::new(
        PolynomialDecay::new(0.0, 0.9, 0, 1)?,
        ControllerConfig::default(),
        layers(),
    )?;
    restored.load_masks(tmp.join("masks.bin"))?;
    let bytes = std::fs::metadata(tmp.join("masks.bin"))?.len();
    std::fs::remove_dir_all(&tmp)?;
    ensure!(
        restored.mask("fc1.weight") == ctl.mask("fc1.weight"),
        "masks differ after restore"
    );
    println!(
        "masks saved and restored: {bytes} bytes for {} weights",
        report.total - HID - OUT
    );

    println!("\ngradual schedule (every 5th mask update):");
    println!("| step | target sparsity | held-out accuracy |\n|---:|---:|---:|");
    for (s, sp, a) in trace {
        println!("| {s} | {:.3} | {:.3} |", sp, a);
    }
    println!("\n| model | weight sparsity | held-out accuracy |\n|---|---:|---:|");
    for (name, s, a) in rows {
        println!("| {name} | {:.1} % | {:.3} |", s * 100.0, a);
    }
    println!("\nran in {:.2?}", t0.elapsed());
    Ok(())
}
