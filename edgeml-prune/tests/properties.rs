//! Property tests: exact counts, deterministic tie-breaks, N:M groups, global vs
//! layer-wise, mask file round trips.

use edgeml_prune::masks::{decode_masks, encode_masks};
use edgeml_prune::pattern::{BlockReduce, Norm, block_mask, keep_of_group, ln_structured};
use edgeml_prune::select::{prune_smallest_k, tfmot_keep_count, threshold_mask};
use edgeml_prune::{Amount, global_magnitude, l1_unstructured};
use proptest::prelude::*;

/// Weights with many exact ties (and signed zeros): quarter steps in [-2, 2].
fn tied(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-8i32..=8).prop_map(|v| v as f32 * 0.25), 1..max_len)
}

/// The reference rule: sort indices by (|w|, index), prune the first k.
fn reference(w: &[f32], k: usize) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..w.len()).collect();
    idx.sort_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()).then(a.cmp(&b)));
    let mut keep = vec![true; w.len()];
    for &i in &idx[..k] {
        keep[i] = false;
    }
    keep
}

proptest! {
    #[test]
    fn exact_k_prunes_exactly_k_with_index_tie_break(w in tied(300), f in 0.0f64..1.0) {
        let k = ((w.len() as f64) * f) as usize;
        let mut keep = vec![true; w.len()];
        prune_smallest_k(&w, k, &mut keep).unwrap();
        prop_assert_eq!(keep.iter().filter(|&&x| !x).count(), k);
        prop_assert_eq!(keep, reference(&w, k));
    }

    #[test]
    fn global_of_one_layer_is_layerwise(w in tied(300), f in 0.0f64..1.0) {
        let layer = l1_unstructured(&w, Amount::Fraction(f)).unwrap();
        let global = global_magnitude(&[&w], Amount::Fraction(f)).unwrap();
        prop_assert_eq!(&global[0], &layer);
    }

    #[test]
    fn global_equals_concatenated(a in tied(100), b in tied(100), c in prop::collection::vec(-1e3f32..1e3, 1..100), f in 0.0f64..1.0) {
        let cat: Vec<f32> = a.iter().chain(&b).chain(&c).copied().collect();
        let want = l1_unstructured(&cat, Amount::Fraction(f)).unwrap();
        let got = global_magnitude(&[&a, &b, &c], Amount::Fraction(f)).unwrap();
        let flat: Vec<bool> = got.concat();
        prop_assert_eq!(flat, want);
    }

    #[test]
    fn keep_of_group_keeps_exactly_keep(rows in 1usize..6, groups in 1usize..5, group in 1usize..6, keep in 1usize..6, seed in prop::collection::vec(-8i32..=8, 200)) {
        prop_assume!(keep <= group);
        let cols = groups * group;
        let w: Vec<f32> = (0..rows * cols).map(|i| seed[i % seed.len()] as f32 * 0.25).collect();
        let m = keep_of_group(&w, &[rows, cols], keep, group, 1).unwrap();
        for r in 0..rows {
            for g in 0..groups {
                let span = r * cols + g * group..r * cols + (g + 1) * group;
                let kept: Vec<usize> = span.clone().filter(|&i| m[i]).collect();
                prop_assert_eq!(kept.len(), keep);
                let min_kept = kept.iter().map(|&i| w[i].abs()).fold(f32::INFINITY, f32::min);
                prop_assert!(span.filter(|&i| !m[i]).all(|i| w[i].abs() <= min_kept));
            }
        }
        // Along axis 0 of the transpose, the same mask transposed.
        let wt: Vec<f32> = (0..cols * rows).map(|i| w[(i % rows) * cols + i / rows]).collect();
        let mt = keep_of_group(&wt, &[cols, rows], keep, group, 0).unwrap();
        for i in 0..rows * cols {
            prop_assert_eq!(mt[(i % cols) * rows + i / cols], m[i]);
        }
    }

    #[test]
    fn threshold_keeps_at_least_k_and_ranks(w in tied(300), s in 0.0f32..0.999) {
        let mut keep = vec![false; w.len()];
        let thr = threshold_mask(&w, s, &mut keep).unwrap();
        let kept = keep.iter().filter(|&&x| x).count();
        prop_assert!(kept >= tfmot_keep_count(w.len(), s));
        for (i, &k) in keep.iter().enumerate() {
            prop_assert_eq!(k, w[i].abs() >= thr);
        }
    }

    #[test]
    fn blocks_share_one_flag(rows in 1usize..9, cols in 1usize..9, h in 1usize..4, bw in 1usize..4, f in 0.0f64..1.0, seed in prop::collection::vec(-8i32..=8, 81)) {
        let w: Vec<f32> = (0..rows * cols).map(|i| seed[i] as f32 * 0.25).collect();
        for reduce in [BlockReduce::Mean, BlockReduce::Max] {
            let m = block_mask(&w, &[rows, cols], h, bw, reduce, Amount::Fraction(f)).unwrap();
            let (br, bc) = (rows.div_ceil(h), cols.div_ceil(bw));
            let mut pruned_blocks = 0;
            for b in 0..br * bc {
                let cells: Vec<usize> = (0..rows * cols)
                    .filter(|i| (i / cols) / h == b / bc && (i % cols) / bw == b % bc)
                    .collect();
                prop_assert!(cells.iter().all(|&i| m[i] == m[cells[0]]));
                pruned_blocks += usize::from(!m[cells[0]]);
            }
            prop_assert_eq!(pruned_blocks, ((br * bc) as f64 * f).round_ties_even() as usize);
        }
    }

    #[test]
    fn structured_prunes_whole_slices(o in 1usize..7, i in 1usize..7, f in 0.0f64..1.0, seed in prop::collection::vec(-8i32..=8, 36)) {
        let w: Vec<f32> = (0..o * i).map(|j| seed[j] as f32 * 0.25).collect();
        let m = ln_structured(&w, &[o, i], Amount::Fraction(f), Norm::L1, 0).unwrap();
        let rows_pruned = (0..o).filter(|r| !m[r * i]).count();
        prop_assert_eq!(rows_pruned, (o as f64 * f).round_ties_even() as usize);
        for r in 0..o {
            prop_assert!(m[r * i..(r + 1) * i].iter().all(|&x| x == m[r * i]));
        }
    }

    #[test]
    fn mask_file_round_trips(masks in prop::collection::vec(("[a-z.]{0,12}", prop::collection::vec(any::<bool>(), 0..70)), 0..5)) {
        let mut seen = std::collections::HashSet::new();
        let masks: Vec<(String, Vec<bool>)> = masks.into_iter().filter(|(n, _)| seen.insert(n.clone())).collect();
        let views: Vec<(&str, &[bool])> = masks.iter().map(|(n, m)| (n.as_str(), m.as_slice())).collect();
        let bytes = encode_masks(&views);
        prop_assert_eq!(decode_masks(&bytes).unwrap(), masks);
        // Every strict prefix is rejected, never a panic.
        for cut in 0..bytes.len() {
            prop_assert!(decode_masks(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut b = b"EDGEMLMK\x01\0\0\0".to_vec();
        b.extend(bytes);
        let _ = decode_masks(&b);
    }
}
