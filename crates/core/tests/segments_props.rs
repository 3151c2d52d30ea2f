//! Property tests for encoding and segmentation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use sms_core::encoding::{self, Encoding, gsm7_septets, split, units_in};

/// Characters from every class: basic GSM, extension GSM, BMP non-GSM, astral (surrogate pairs).
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select("abcXYZ 019@£é\n.!".chars().collect::<Vec<_>>()),
        2 => prop::sample::select("[]{}^~|\\€\u{0C}".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("çáñ’“—你".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("😀🎉𝄞".chars().collect::<Vec<_>>()),
    ]
}

fn gsm_only() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select("ab @£\n[]{}€~".chars().collect::<Vec<_>>()),
        0..500,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 0..500).prop_map(|v| v.into_iter().collect())
}

/// The least number of segments an ordered sequence of item costs fits into, by exhaustive
/// dynamic programming (independent of the greedy packer under test).
fn least_segments(costs: &[usize], limit: usize) -> usize {
    let n = costs.len();
    let mut best = vec![usize::MAX; n + 1];
    best[0] = 0;
    for end in 1..=n {
        let mut sum = 0;
        for start in (0..end).rev() {
            sum += costs[start];
            if sum > limit {
                break;
            }
            if best[start] != usize::MAX {
                best[end] = best[end].min(best[start] + 1);
            }
        }
    }
    best[n]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn segment_count_is_the_least_that_fits(text in any_text()) {
        let c = encoding::count(&text);
        let costs: Vec<usize> = text.chars().map(|ch| match c.encoding {
            Encoding::Gsm7 => usize::from(gsm7_septets(ch).unwrap()),
            Encoding::Ucs2 => ch.len_utf16(),
        }).collect();
        let expected = if c.units <= c.encoding.single_limit() {
            usize::from(c.units > 0)
        } else {
            least_segments(&costs, c.encoding.multi_limit())
        };
        prop_assert_eq!(c.segments, expected);
    }

    #[test]
    fn split_respects_limits_and_rebuilds_the_text(text in any_text()) {
        let c = encoding::count(&text);
        let parts = split(&text);
        prop_assert_eq!(parts.len(), c.segments);
        prop_assert_eq!(parts.concat(), text.clone());
        let limit = if c.segments > 1 { c.encoding.multi_limit() } else { c.encoding.single_limit() };
        for p in &parts {
            prop_assert!(units_in(c.encoding, p) <= limit);
            prop_assert!(!p.is_empty());
        }
        // Splitting between chars never breaks an escape or surrogate pair; check UTF-16 too.
        let units: usize = parts.iter().map(|p| units_in(c.encoding, p)).sum();
        prop_assert_eq!(units, c.units);
    }

    #[test]
    fn gsm_text_stays_gsm_and_counts_septets(text in gsm_only()) {
        let c = encoding::count(&text);
        prop_assert_eq!(c.encoding, Encoding::Gsm7);
        let septets: usize = text.chars().map(|ch| usize::from(gsm7_septets(ch).unwrap())).sum();
        prop_assert_eq!(c.units, septets);
    }

    #[test]
    fn one_non_gsm_char_forces_ucs2(text in gsm_only(), pos in 0usize..500, ch in prop::sample::select(vec!['ç', '’', '😀'])) {
        let mut chars: Vec<char> = text.chars().collect();
        let at = pos.min(chars.len());
        chars.insert(at, ch);
        let s: String = chars.into_iter().collect();
        let a = encoding::analyze(&s);
        prop_assert_eq!(a.encoding, Encoding::Ucs2);
        prop_assert_eq!(a.characters, s.encode_utf16().count());
        prop_assert_eq!(a.non_gsm, vec![ch]);
    }

    #[test]
    fn smart_encoding_never_adds_segments_when_it_reaches_gsm(text in any_text()) {
        let s = sms_core::smart::smart_encoded(&text);
        if s.after.encoding == Encoding::Gsm7 && s.before.encoding == Encoding::Ucs2 {
            // Replacing one UCS-2 unit by up to three septets can still be cheaper or equal.
            prop_assert!(s.after.units <= s.before.units * 3);
        }
        prop_assert!(s.text.chars().all(|c| sms_core::smart::replacement(c).is_none()));
    }
}
