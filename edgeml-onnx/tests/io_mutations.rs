//! Random byte mutations of valid models never panic the loader; whatever loads also
//! saves and reloads to the same bytes.

use edgeml_onnx::{Limits, LoadOptions, Model};
use proptest::prelude::*;
use std::path::PathBuf;

const SEEDS: [&str; 5] = [
    "light_bvlc_alexnet.onnx",
    "light_zfnet512.onnx",
    "light_vgg19.onnx",
    "encodings.onnx",
    "skl_logreg_pipeline.onnx",
];

fn seed(i: usize) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(SEEDS[i % SEEDS.len()]);
    std::fs::read(p).expect("seed model")
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite the byte at a position.
    Set(usize, u8),
    /// Flip one bit.
    Flip(usize, u8),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Remove a range.
    Remove(usize, usize),
    /// Write a maximal varint (a huge length prefix or dimension).
    BigVarint(usize),
    /// Cut the file.
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, v)| Mutation::Insert(p, v)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Remove(p, n)),
        any::<usize>().prop_map(Mutation::BigVarint),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        let at = |p: usize| p % b.len();
        match m {
            Mutation::Set(p, v) => {
                let i = at(*p);
                b[i] = *v;
            }
            Mutation::Flip(p, bit) => {
                let i = at(*p);
                b[i] ^= 1 << bit;
            }
            Mutation::Insert(p, v) => {
                let i = at(*p);
                b.splice(i..i, v.iter().copied());
            }
            Mutation::Remove(p, n) => {
                let i = at(*p);
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Mutation::BigVarint(p) => {
                let i = at(*p);
                let end = (i + 10).min(b.len());
                let big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
                b[i..end].copy_from_slice(&big[..end - i]);
            }
            Mutation::Truncate(p) => {
                let i = at(*p);
                b.truncate(i);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn mutated_models_never_panic(which in 0usize..SEEDS.len(),
                                  muts in prop::collection::vec(mutation(), 1..6)) {
        let bytes = apply(seed(which), &muts);
        // Tight limits, as for untrusted input on a small device.
        let limits = Limits::default()
            .max_tensor_elements(1 << 24)
            .max_total_weight_bytes(256 << 20)
            .max_nodes(100_000);
        let opts = LoadOptions::new().limits(limits);
        if let Ok(m) = Model::from_bytes_with(&bytes, &opts) {
            let again = m.to_bytes().expect("a loaded model saves");
            let back = Model::from_bytes_with(&again, &opts).expect("and reloads");
            // Compared as bytes: mutations can create NaN weights (NaN != NaN).
            prop_assert!(back.to_bytes().expect("saves again") == again);
        }
    }
}
