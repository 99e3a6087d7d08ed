//! Unit and property tests of the sampling filters.

use super::*;
use proptest::prelude::*;

fn probs_sum(c: &Candidates) -> f64 {
    c.as_slice().iter().map(|x| f64::from(x.p)).sum()
}

fn max_logit(logits: &[f32]) -> f32 {
    logits.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The invariants every filter promises.
fn assert_filter_invariants(c: &Candidates, logits: &[f32]) -> Result<(), TestCaseError> {
    prop_assert!(!c.is_empty(), "kept set is empty");
    prop_assert!((probs_sum(c) - 1.0).abs() < 1e-5, "sum {}", probs_sum(c));
    let m = max_logit(logits);
    prop_assert!(
        c.as_slice().iter().any(|x| logits[x.id as usize] == m),
        "argmax dropped"
    );
    let mut ids: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
    ids.sort_unstable();
    ids.dedup();
    prop_assert_eq!(ids.len(), c.len(), "duplicate ids");
    Ok(())
}

fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        // Small vocabularies with many repeated values (ties).
        prop::collection::vec((-4i32..4).prop_map(|x| x as f32), 1..40),
        // Continuous values.
        prop::collection::vec(-20.0f32..20.0, 1..400),
        // Larger than top-p's first sorted block.
        prop::collection::vec(-10.0f32..10.0, 1000..3000),
    ]
}

proptest! {
    #[test]
    fn softmax_normalises(logits in logits_strategy()) {
        let mut c = Candidates::from_logits(&logits);
        softmax(&mut c);
        assert_filter_invariants(&c, &logits)?;
    }

    #[test]
    fn top_k_keeps_the_k_best(logits in logits_strategy(), k in 0usize..50) {
        check_top_k(&logits, k)?;
    }

    #[test]
    fn top_p_keeps_smallest_prefix_reaching_p(logits in logits_strategy(), p in 0.0f32..1.0) {
        check_top_p(&logits, p)?;
    }

    #[test]
    fn min_p_keeps_tokens_above_threshold(logits in logits_strategy(), m in 0.0f32..1.0, pre_k in 0usize..20) {
        let mut c = Candidates::from_logits(&logits);
        // Run both the sorted (after top-k) and unsorted paths.
        top_k(&mut c, pre_k);
        let before: std::collections::HashMap<u32, f32> =
            c.as_slice().iter().map(|x| (x.id, x.p)).collect();
        let p_max = before.values().copied().fold(0.0f32, f32::max);
        min_p(&mut c, m);
        assert_filter_invariants(&c, &logits)?;
        let kept: std::collections::HashSet<u32> = c.as_slice().iter().map(|x| x.id).collect();
        for (&id, &q) in &before {
            prop_assert_eq!(kept.contains(&id), q >= m * p_max, "id {} p {} max {}", id, q, p_max);
        }
    }

    #[test]
    fn temperature_normalises_and_keeps_order(logits in logits_strategy(), t in 0.05f32..5.0) {
        let mut c = Candidates::from_logits(&logits);
        temperature(&mut c, t);
        assert_filter_invariants(&c, &logits)?;
        // p is monotone in the original logit.
        let mut pairs: Vec<(f32, f32)> = c.as_slice().iter().map(|x| (logits[x.id as usize], x.p)).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in pairs.windows(2) {
            prop_assert!(w[0].1 <= w[1].1);
        }
    }

    #[test]
    fn chain_keeps_invariants(logits in logits_strategy(), k in 0usize..30, p in 0.0f32..1.0, m in 0.0f32..0.5, t in 0.1f32..2.0) {
        let mut c = Candidates::from_logits(&logits);
        top_k(&mut c, k);
        assert_filter_invariants(&c, &logits)?;
        top_p(&mut c, p);
        assert_filter_invariants(&c, &logits)?;
        min_p(&mut c, m);
        assert_filter_invariants(&c, &logits)?;
        temperature(&mut c, t);
        assert_filter_invariants(&c, &logits)?;
        let chosen = draw(&mut c, 0.5);
        prop_assert!(chosen.is_some_and(|id| c.as_slice().iter().any(|x| x.id == id)));
    }
}

fn check_top_k(logits: &[f32], k: usize) -> Result<(), TestCaseError> {
    let mut c = Candidates::from_logits(logits);
    top_k(&mut c, k);
    assert_filter_invariants(&c, logits)?;
    let want = if k == 0 {
        logits.len()
    } else {
        k.min(logits.len())
    };
    prop_assert_eq!(c.len(), want);
    // Nothing dropped beats anything kept.
    let worst_kept = c
        .as_slice()
        .iter()
        .map(|x| x.logit)
        .fold(f32::INFINITY, f32::min);
    let kept: std::collections::HashSet<u32> = c.as_slice().iter().map(|x| x.id).collect();
    for (i, &l) in logits.iter().enumerate() {
        if !kept.contains(&(i as u32)) {
            prop_assert!(l <= worst_kept);
        }
    }
    // Pre-selecting while filling gives the same list.
    let mut d = Candidates::default();
    d.fill_top_k(logits, k);
    top_k(&mut d, k);
    let by_id = |c: &Candidates| {
        let mut v = c.as_slice().to_vec();
        v.sort_by_key(|x| x.id);
        v
    };
    prop_assert_eq!(by_id(&c), by_id(&d));
    Ok(())
}

fn check_top_p(logits: &[f32], p: f32) -> Result<(), TestCaseError> {
    let mut c = Candidates::from_logits(logits);
    softmax(&mut c);
    let mut before = vec![0.0f32; logits.len()];
    c.as_slice()
        .iter()
        .for_each(|x| before[x.id as usize] = x.p);
    top_p(&mut c, p);
    assert_filter_invariants(&c, logits)?;
    let kept = c.as_slice();
    // The kept set is a prefix of the descending order ...
    let worst_kept = kept
        .iter()
        .map(|x| before[x.id as usize])
        .fold(f32::INFINITY, f32::min);
    let n_better = before.iter().filter(|&&q| q > worst_kept).count();
    prop_assert!(n_better < kept.len());
    // ... that reaches p (or is everything) ...
    let mass: f64 = kept.iter().map(|x| f64::from(before[x.id as usize])).sum();
    prop_assert!(mass >= f64::from(p) - 1e-9 || kept.len() == logits.len());
    // ... and is the smallest such: without its least likely token it
    // falls short.
    let last = f64::from(worst_kept);
    prop_assert!(
        mass - last < f64::from(p) + 1e-9,
        "mass {} last {} p {}",
        mass,
        last,
        p
    );
    // Renormalised, not just copied.
    for x in kept {
        let want = f64::from(before[x.id as usize]) / mass;
        prop_assert!((f64::from(x.p) - want).abs() < 1e-5);
    }
    Ok(())
}

/// Vocabulary-sized rows (past the histogram threshold), from flat to
/// peaked, with or without ties.
fn large_logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    (
        prop::collection::vec(-10.0f32..10.0, 4096..6000),
        0.1f32..4.0,
        any::<bool>(),
    )
        .prop_map(|(v, scale, round)| {
            v.into_iter()
                .map(|x| {
                    if round {
                        (x * scale).round()
                    } else {
                        x * scale
                    }
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn large_lists_top_k(logits in large_logits_strategy(), k in 1usize..300) {
        check_top_k(&logits, k)?;
    }

    #[test]
    fn large_lists_top_p(logits in large_logits_strategy(), p in 0.0f32..1.0) {
        check_top_p(&logits, p)?;
    }

    #[test]
    fn large_lists_chain(logits in large_logits_strategy(), p in 0.0f32..1.0, m in 0.0f32..0.2) {
        let mut c = Candidates::from_logits(&logits);
        top_p(&mut c, p);
        min_p(&mut c, m);
        assert_filter_invariants(&c, &logits)?;
        temperature(&mut c, 0.7);
        assert_filter_invariants(&c, &logits)?;
    }
}

#[test]
fn softmax_matches_hand_computed_values() {
    let mut c = Candidates::from_logits(&[0.0, 1.0f32.ln(), 2.0f32.ln(), 5.0f32.ln()]);
    softmax(&mut c);
    let p: Vec<f32> = c.as_slice().iter().map(|x| x.p).collect();
    let want = [1.0 / 9.0, 1.0 / 9.0, 2.0 / 9.0, 5.0 / 9.0];
    for (a, b) in p.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{p:?}");
    }
}

#[test]
fn top_p_hand_example() {
    // p = [0.5, 0.3, 0.15, 0.05] by id 3, 1, 0, 2.
    let logits = [0.15f32.ln(), 0.3f32.ln(), 0.05f32.ln(), 0.5f32.ln()];
    let mut c = Candidates::from_logits(&logits);
    top_p(&mut c, 0.75);
    let ids: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
    assert_eq!(ids, [3, 1]);
    assert!((c.as_slice()[0].p - 0.625).abs() < 1e-6);
    let mut c = Candidates::from_logits(&logits);
    top_p(&mut c, 0.85);
    assert_eq!(c.len(), 3);
    let mut c = Candidates::from_logits(&logits);
    top_p(&mut c, 0.0);
    assert_eq!(c.as_slice().iter().map(|x| x.id).collect::<Vec<_>>(), [3]);
}

#[test]
fn top_k_ties_break_towards_lower_ids() {
    let mut c = Candidates::from_logits(&[1.0, 3.0, 1.0, 3.0, 1.0]);
    top_k(&mut c, 3);
    let ids: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
    assert_eq!(ids, [1, 3, 0]);
}

#[test]
fn min_p_hand_example() {
    // p = [0.5, 0.3, 0.15, 0.05]: min_p 0.3 keeps p >= 0.15.
    let logits = [0.5f32.ln(), 0.3f32.ln(), 0.15f32.ln() + 1e-4, 0.05f32.ln()];
    let mut c = Candidates::from_logits(&logits);
    min_p(&mut c, 0.3);
    let mut ids: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
}

#[test]
fn top_p_on_a_large_flat_vocab_matches_a_full_sort() {
    // 50k near-uniform logits: top_p 0.9 needs ~45k tokens.
    let logits: Vec<f32> = (0..50_000)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-4)
        .collect();
    let mut c = Candidates::from_logits(&logits);
    top_p(&mut c, 0.9);
    assert!(c.len() > 40_000 && c.len() < 50_000, "{}", c.len());
    assert!((probs_sum(&c) - 1.0).abs() < 1e-4);
    // Reference: sort everything, take the prefix.
    let mut r = Candidates::from_logits(&logits);
    softmax(&mut r);
    let mut all = r.as_slice().to_vec();
    all.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
    let mut cum = 0.0f64;
    let n = all.iter().take_while(|x| {
        let before = cum;
        cum += f64::from(x.p);
        before < 0.9
    });
    let mut want: Vec<u32> = n.map(|x| x.id).collect();
    let mut got: Vec<u32> = c.as_slice().iter().map(|x| x.id).collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got.len(), want.len());
    // Ties at the cut may pick different ids of equal logit.
    let differing = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| logits[**a as usize] != logits[**b as usize])
        .count();
    assert_eq!(differing, 0);
}

#[test]
fn draw_follows_cumulative_probabilities_and_skips_zero() {
    // p = [0.25, 0, 0.75] by id.
    let logits = [0.25f32.ln(), f32::NEG_INFINITY, 0.75f32.ln()];
    let mut c = Candidates::from_logits(&logits);
    assert_eq!(draw(&mut c, 0.0), Some(0));
    assert_eq!(draw(&mut c, 0.2499), Some(0));
    assert_eq!(draw(&mut c, 0.2501), Some(2));
    assert_eq!(draw(&mut c, 0.999_999_999), Some(2));
    assert_eq!(draw(&mut Candidates::default(), 0.5), None);
}

#[test]
fn nan_logits_are_never_preferred() {
    let c = Candidates::from_logits(&[f32::NAN, 0.5, f32::NAN]);
    assert_eq!(c.argmax().map(|x| x.id), Some(1));
}

#[test]
fn all_banned_list_still_has_a_distribution() {
    let mut c = Candidates::from_logits(&[f32::NEG_INFINITY; 4]);
    softmax(&mut c);
    assert!((probs_sum(&c) - 1.0).abs() < 1e-6);
}
