//! Prints JSON medians of global magnitude pruning (10 layers × 10 M weights by
//! default) and of layer-wise exact-k on one layer; used by `scripts/bench_prune.py`
//! next to numpy's `np.partition` equivalent in the same run. Single-threaded.
//!
//! Usage: `prune_bench [layers] [layer_len] [reps]`.

use edgeml::prune::select::prune_smallest_k;
use edgeml::prune::{Amount, global_magnitude_into};
use std::time::Instant;

/// SplitMix64 → roughly normal weights (Irwin–Hall of 4 uniforms), deterministic.
fn weights(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let u = next();
            let parts = (0..4).map(|i| ((u >> (16 * i)) & 0xffff) as f32 / 65536.0);
            (parts.sum::<f32>() - 2.0) * 0.05
        })
        .collect()
}

fn median(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (layers, len, reps) = (arg(1, 10), arg(2, 10_000_000), arg(3, 5));
    let ws: Vec<Vec<f32>> = (0..layers).map(|l| weights(l as u64 + 1, len)).collect();
    let views: Vec<&[f32]> = ws.iter().map(|w| w.as_slice()).collect();
    let mut masks: Vec<Vec<bool>> = ws.iter().map(|w| vec![true; w.len()]).collect();
    let total = layers * len;
    for sparsity in [0.5, 0.9] {
        let mut pruned = 0;
        let t = median(
            || {
                let mut m: Vec<&mut [bool]> = masks.iter_mut().map(|m| m.as_mut_slice()).collect();
                pruned = global_magnitude_into(&views, Amount::Fraction(sparsity), &mut m)
                    .expect("global");
            },
            reps,
        );
        let zeros: usize = masks
            .iter()
            .map(|m| m.iter().filter(|&&k| !k).count())
            .sum();
        assert_eq!(zeros, pruned, "exactly k pruned");
        println!(
            "{{\"bench\": \"global_magnitude\", \"weights\": {total}, \"layers\": {layers}, \"sparsity\": {sparsity}, \"seconds\": {t:.6}}}"
        );
    }
    let k = len * 9 / 10;
    let t = median(
        || prune_smallest_k(&ws[0], k, &mut masks[0]).expect("layer"),
        reps,
    );
    println!(
        "{{\"bench\": \"layer_exact_k\", \"weights\": {len}, \"layers\": 1, \"sparsity\": 0.9, \"seconds\": {t:.6}}}"
    );
}
