//! The task answers and the post-processing that makes them, as Hugging Face's pipelines do:
//! top-k of a masked token, BIO tags grouped into entities ("simple" aggregation), the best
//! answer span over the windows of a long context.

use crate::tokenizer::{Encoding, Span};

/// One candidate for a `[MASK]` (Hugging Face's fill-mask pipeline).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskPrediction {
    pub token: u32,
    pub token_str: String,
    pub score: f32,
    /// The text with this mask filled in (special tokens dropped, as HF decodes it).
    pub sequence: String,
}

/// A run of tokens with one tag (Hugging Face's token-classification pipeline, "simple").
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    /// The tag without its `B-` / `I-` prefix (`PER`, `LOC`, ...).
    pub entity_group: String,
    /// Mean of the tokens' probabilities.
    pub score: f32,
    /// The tokens joined back into text.
    pub word: String,
    /// Character offsets into the text: `text.chars().skip(start).take(end - start)`.
    pub start: usize,
    pub end: usize,
}

/// An answer span in the context (Hugging Face's question-answering pipeline).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub answer: String,
    /// P(start) × P(end) within the best window.
    pub score: f32,
    /// Character offsets into the context.
    pub start: usize,
    pub end: usize,
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    if k == 0 {
        return vec![];
    }
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// A tag's (`B`|`I`, entity) parts: `B-PER` → (true, "PER"); `O` or a bare tag → (false, tag).
fn split_tag(tag: &str) -> (bool, &str) {
    match tag.split_at_checked(2) {
        Some(("B-", rest)) => (true, rest),
        Some(("I-", rest)) => (false, rest),
        _ => (false, tag),
    }
}

/// One tagged token before grouping.
pub struct TaggedToken<'a> {
    pub tag: &'a str,
    pub score: f32,
    pub token: &'a str,
    pub span: Span,
}

/// Groups consecutive tokens of one entity (a `B-` tag starts a new group) and drops `O`,
/// as HF's `group_entities` does. `join` turns the group's token strings into its text.
pub fn group_entities(tokens: &[TaggedToken<'_>], join: impl Fn(&[&str]) -> String) -> Vec<Entity> {
    let mut groups: Vec<Vec<&TaggedToken<'_>>> = Vec::new();
    for t in tokens {
        let (begins, entity) = split_tag(t.tag);
        match groups.last_mut() {
            Some(g) if !begins && split_tag(g[0].tag).1 == entity => g.push(t),
            _ => groups.push(vec![t]),
        }
    }
    groups
        .into_iter()
        .filter(|g| split_tag(g[0].tag).1 != "O")
        .map(|g| {
            let words: Vec<&str> = g.iter().map(|t| t.token).collect();
            Entity {
                entity_group: split_tag(g[0].tag).1.to_owned(),
                score: g.iter().map(|t| t.score).sum::<f32>() / g.len() as f32,
                word: join(&words),
                start: g[0].span.0 as usize,
                end: g[g.len() - 1].span.1 as usize,
            }
        })
        .collect()
}

/// The best span of one window: softmax of start and end logits over the context tokens and
/// `[CLS]` (whose probability is then zeroed), best `P(s) P(e)` with `s ≤ e < s + max_len`,
/// both in the context. Returns (score, start token, end token).
pub fn best_span(
    encoding: &Encoding,
    start_logits: &[f32],
    end_logits: &[f32],
    max_answer_len: usize,
) -> Option<(f32, usize, usize)> {
    let n = encoding.len();
    // Context tokens: type 1, and not the final [SEP].
    let context = |i: usize| encoding.type_ids[i] == 1 && i + 1 < n;
    let probs = |logits: &[f32]| {
        let allowed = |i: usize| i == 0 || context(i);
        let max = (0..n).filter(|&i| allowed(i)).map(|i| logits[i]).fold(f32::MIN, f32::max);
        let mut p: Vec<f32> =
            (0..n).map(|i| if allowed(i) { (logits[i] - max).exp() } else { 0.0 }).collect();
        let sum: f32 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        p[0] = 0.0;
        p
    };
    let (ps, pe) = (probs(start_logits), probs(end_logits));
    let mut best: Option<(f32, usize, usize)> = None;
    for s in (0..n).filter(|&i| context(i)) {
        for e in (s..n.min(s + max_answer_len.max(1))).filter(|&i| context(i)) {
            let score = ps[s] * pe[e];
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, s, e));
            }
        }
    }
    best
}

/// The characters `start..end` of `text`.
pub fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end.saturating_sub(start)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, 0.9], 3), vec![3, 1, 2]);
        assert_eq!(top_k(&[0.1], 5), vec![0]);
        assert!(top_k(&[], 2).is_empty());
    }

    #[test]
    fn groups_bio_tags_like_hugging_face() {
        let t = |tag, score, token, span| TaggedToken { tag, score, token, span };
        let tokens = [
            t("B-ORG", 0.9, "hugging", (0, 7)),
            t("I-ORG", 0.7, "face", (8, 12)),
            t("O", 0.99, "is", (13, 15)),
            t("B-LOC", 0.8, "new", (25, 28)),
            t("B-LOC", 0.6, "york", (29, 33)),
            t("I-PER", 0.5, "x", (34, 35)),
            t("I-PER", 0.7, "##y", (35, 36)),
        ];
        let join = |w: &[&str]| w.join(" ").replace(" ##", "");
        let e = group_entities(&tokens, join);
        let summary: Vec<_> =
            e.iter().map(|e| (e.entity_group.as_str(), e.word.as_str(), e.start, e.end)).collect();
        assert_eq!(
            summary,
            [
                ("ORG", "hugging face", 0, 12),
                ("LOC", "new", 25, 28),
                ("LOC", "york", 29, 33),
                ("PER", "xy", 34, 36)
            ]
        );
        assert!((e[0].score - 0.8).abs() < 1e-6);
    }

    #[test]
    fn best_span_stays_in_the_context() {
        let mut enc = Encoding::default();
        for ty in [0, 0, 0, 1, 1, 1, 1] {
            enc.ids.push(1).unwrap();
            enc.type_ids.push(ty).unwrap();
        }
        // The question token (1) has the highest logits, the final [SEP] (6) too: not chosen.
        let start = [9.0, 9.0, 0.0, 1.0, 3.0, 0.0, 9.0];
        let end = [9.0, 9.0, 0.0, 0.0, 0.0, 4.0, 9.0];
        let (score, s, e) = best_span(&enc, &start, &end, 15).unwrap();
        assert_eq!((s, e), (4, 5));
        assert!(score > 0.0 && score < 1.0);
        // One-token answers: P(s)P(s) is best at 5 (e^0 · e^4 against e^3 · e^0 at 4).
        assert_eq!(best_span(&enc, &start, &end, 1).map(|b| (b.1, b.2)), Some((5, 5)));
        assert_eq!(char_slice("héllo wörld", 1, 4), "éll");
    }
}
