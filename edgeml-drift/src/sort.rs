//! Sorting of finite `f64` samples through order-preserving `u64` keys: integer
//! comparisons make `sort_unstable` about twice as fast as `sort_by(total_cmp)`, and
//! an 11-bit LSD radix sort was measured slower than both on 10^6 values (cache
//! misses of its 2048-way scatter).

/// Maps an `f64` to a `u64` whose unsigned order is the numeric order. `-0.0` is
/// canonicalised to `0.0` first, so the two compare equal as in numpy.
#[inline]
fn key(x: f64) -> u64 {
    let b = (x + 0.0).to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

#[inline]
fn unkey(k: u64) -> f64 {
    let b = if k >> 63 == 1 { k & !(1 << 63) } else { !k };
    f64::from_bits(b)
}

/// Returns a sorted copy of `xs` (which must not contain NaN); `-0.0` becomes `0.0`.
pub(crate) fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut k: Vec<u64> = xs.iter().map(|&x| key(x)).collect();
    k.sort_unstable();
    k.into_iter().map(unkey).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keyed_sort_matches_std(mut xs in proptest::collection::vec(-1e300f64..1e300, 0..5000)) {
            let got = sorted(&xs);
            xs.sort_by(f64::total_cmp);
            for x in &mut xs {
                *x += 0.0;
            }
            prop_assert_eq!(got, xs);
        }
    }

    #[test]
    fn ties_signs_and_zeros() {
        let xs = [3.0, -0.0, 0.0, -1.5, 3.0, f64::MAX, f64::MIN, 1e-310];
        assert_eq!(
            sorted(&xs),
            vec![f64::MIN, -1.5, 0.0, 0.0, 1e-310, 3.0, 3.0, f64::MAX]
        );
    }
}
