//! Magnitude pruning: global exact-k over 10 layers × 10 M weights, and layer-wise
//! exact-k on 10 M weights next to a full-sort baseline in the same group. numpy's
//! `np.partition` baseline is timed by `scripts/bench_prune.py`.

use criterion::{Criterion, criterion_group, criterion_main};
use edgeml::prune::select::prune_smallest_k;
use edgeml::prune::{Amount, global_magnitude_into};
use std::hint::black_box;

/// SplitMix64 → roughly normal weights (Irwin–Hall of 4 uniforms), as in
/// `bin/prune_bench.rs`.
fn weights(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let parts = (0..4).map(|i| ((z >> (16 * i)) & 0xffff) as f32 / 65536.0);
            (parts.sum::<f32>() - 2.0) * 0.05
        })
        .collect()
}

fn global(c: &mut Criterion) {
    let (layers, len) = (10, 10_000_000);
    let ws: Vec<Vec<f32>> = (0..layers).map(|l| weights(l as u64 + 1, len)).collect();
    let views: Vec<&[f32]> = ws.iter().map(|w| w.as_slice()).collect();
    let mut masks: Vec<Vec<bool>> = ws.iter().map(|w| vec![true; w.len()]).collect();
    let mut g = c.benchmark_group("prune");
    g.sample_size(10);
    g.bench_function("global_magnitude/scalar/10x10000000", |b| {
        b.iter(|| {
            let mut m: Vec<&mut [bool]> = masks.iter_mut().map(|m| m.as_mut_slice()).collect();
            global_magnitude_into(black_box(&views), Amount::Fraction(0.9), &mut m).expect("global")
        })
    });
    g.finish();
}

fn layer(c: &mut Criterion) {
    let n = 10_000_000;
    let w = weights(1, n);
    let k = n * 9 / 10;
    let mut keep = vec![true; n];
    let mut g = c.benchmark_group("prune");
    g.sample_size(10);
    g.bench_function("exact_k_select/scalar/10000000", |b| {
        b.iter(|| prune_smallest_k(black_box(&w), k, &mut keep).expect("select"))
    });
    // Baseline: the same mask from a full sort of the (|w| bits, index) keys.
    g.bench_function("exact_k_full_sort/scalar/10000000", |b| {
        b.iter(|| {
            let mut keys: Vec<u64> = w
                .iter()
                .enumerate()
                .map(|(i, v)| (u64::from(v.to_bits() & 0x7fff_ffff) << 32) | i as u64)
                .collect();
            keys.sort_unstable();
            keep.fill(true);
            for &key in &keys[..k] {
                keep[(key & 0xffff_ffff) as usize] = false;
            }
            black_box(&keep);
        })
    });
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, global, layer);
}
criterion_main!(group::benches);
