//! BERT tokenization, exactly as Hugging Face `tokenizers` does it for `BertTokenizerFast`:
//! special-token split → `BertNormalizer` → `BertPreTokenizer` → `WordPiece` → template
//! (`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`) with `LongestFirst` truncation.
//!
//! We carry our own implementation instead of linking the `tokenizers` crate: it adds ~4 MB to a
//! stripped binary (measured, see README), pulls a regex engine and C code for the board, and
//! allocates freely. This one is ~400 lines, streams the text (a 1 MB input stops being read once
//! enough tokens exist), and keeps the ids of a request in fixed-capacity buffers. Parity with HF is
//! checked by golden tests produced by the Python `tokenizers` package (tests/golden/).
//!
//! Character classes use the same crate (`unicode_categories`) as HF, so `is_other`,
//! `is_punctuation` and `is_mark_nonspacing` agree table for table.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use unicode_categories::UnicodeCategories;

use crate::error::{Error, Result};

/// Longest sequence (special tokens included) a request can hold. BERT position tables are 512.
pub const MAX_SEQ_LEN: usize = 512;

/// Token ids of one request; capacity is fixed so a request's memory is bounded.
pub type Ids = heapless::Vec<u32, MAX_SEQ_LEN>;

/// Where a token came from: `[start, end)` in chars (Unicode scalar values) of the text it was
/// read from, as Hugging Face `tokenizers` reports offsets; `(0, 0)` for the `[CLS]` and
/// `[SEP]` the template adds. In a pair, each side's offsets count in its own text.
pub type Span = (u32, u32);

/// Everything the tokenizer needs; stored in the bundle's metadata (vocab stored separately).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenizerConfig {
    pub lowercase: bool,
    /// `None` means "follow `lowercase`", as in HF.
    pub strip_accents: Option<bool>,
    pub handle_chinese_chars: bool,
    pub clean_text: bool,
    pub unk_token: String,
    pub cls_token: String,
    pub sep_token: String,
    pub pad_token: String,
    pub mask_token: String,
    pub continuing_subword_prefix: String,
    pub max_input_chars_per_word: usize,
    /// Maximum sequence length including special tokens.
    pub max_len: usize,
}

/// The result of tokenizing one text (or pair).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoding {
    pub ids: Ids,
    pub type_ids: Ids,
    /// One per token; empty for an encoding built by hand.
    pub offsets: heapless::Vec<Span, MAX_SEQ_LEN>,
}

impl Encoding {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Keeps the first `n - 1` tokens and the last one (`[SEP]`), as truncation at `n` would.
    pub fn truncate(&mut self, n: usize) {
        if n >= 2 && self.len() > n {
            let (last_id, last_type) = (self.ids[self.len() - 1], self.type_ids[self.len() - 1]);
            self.ids.truncate(n - 1);
            self.type_ids.truncate(n - 1);
            // Capacity is available: we just removed elements.
            let _ = self.ids.push(last_id);
            let _ = self.type_ids.push(last_type);
            if let Some(&last_span) = self.offsets.last() {
                self.offsets.truncate(n - 1);
                let _ = self.offsets.push(last_span);
            }
        }
    }
}

pub struct Tokenizer {
    config: TokenizerConfig,
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
    unk: u32,
    cls: u32,
    sep: u32,
    pad: u32,
    /// Special tokens matched verbatim in the raw text (HF "added tokens", normalized: false),
    /// longest first so that leftmost-longest matching is a simple scan.
    specials: Vec<(String, u32)>,
}

impl Tokenizer {
    /// Builds a tokenizer from a vocabulary (one token per line, id = line number).
    ///
    /// # Errors
    /// If a special token is missing from the vocabulary, the vocabulary has duplicates, or
    /// `max_len` is outside `3..=MAX_SEQ_LEN`.
    pub fn new(config: TokenizerConfig, vocab_text: &str) -> Result<Tokenizer> {
        let tokens: Vec<String> = vocab_text.lines().map(str::to_owned).collect();
        let mut vocab = HashMap::with_capacity(tokens.len());
        for (id, tok) in tokens.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| Error::bundle("vocabulary too large"))?;
            // HF's vocab.txt loader keeps the first occurrence of a duplicate line.
            vocab.entry(tok.clone()).or_insert(id);
        }
        if !(3..=MAX_SEQ_LEN).contains(&config.max_len) {
            return Err(Error::bundle(format!(
                "max_len {} outside 3..={MAX_SEQ_LEN}",
                config.max_len
            )));
        }
        let lookup = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| Error::bundle(format!("special token {t:?} not in vocabulary")))
        };
        let (unk, cls, sep, pad) = (
            lookup(&config.unk_token)?,
            lookup(&config.cls_token)?,
            lookup(&config.sep_token)?,
            lookup(&config.pad_token)?,
        );
        let mut specials = Vec::new();
        for t in [
            &config.pad_token,
            &config.unk_token,
            &config.cls_token,
            &config.sep_token,
            &config.mask_token,
        ] {
            if let Some(&id) = vocab.get(t.as_str())
                && !t.is_empty()
                && !specials.iter().any(|(s, _)| s == t)
            {
                specials.push((t.clone(), id));
            }
        }
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(Tokenizer { config, vocab, tokens, unk, cls, sep, pad, specials })
    }

    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The id of the mask token (`[MASK]`), if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.vocab.get(self.config.mask_token.as_str()).copied()
    }

    /// Whether `id` is one of the special tokens (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`).
    pub fn is_special(&self, id: u32) -> bool {
        self.specials.iter().any(|&(_, s)| s == id)
    }

    /// Text from ids as Hugging Face's `decode(ids, skip_special_tokens=True)` gives it for
    /// BERT: WordPiece pieces joined (`##` glued on), then its clean-up of tokenization spaces.
    pub fn decode(&self, ids: &[u32]) -> String {
        let prefix = self.config.continuing_subword_prefix.as_str();
        let mut out = String::new();
        let kept = ids.iter().filter(|&&id| !self.is_special(id)).filter_map(|&id| self.token(id));
        for (i, tok) in kept.enumerate() {
            match tok.strip_prefix(prefix) {
                Some(rest) if i > 0 && !prefix.is_empty() => out.push_str(rest),
                _ => {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(tok);
                }
            }
        }
        // transformers' `clean_up_tokenization`, in its order.
        for (from, to) in [
            (" .", "."),
            (" ?", "?"),
            (" !", "!"),
            (" ,", ","),
            (" ' ", "'"),
            (" n't", "n't"),
            (" 'm", "'m"),
            (" 's", "'s"),
            (" 've", "'ve"),
            (" 're", "'re"),
        ] {
            out = out.replace(from, to);
        }
        out
    }

    /// `[CLS] question [SEP] window [SEP]` for each window of `context` that fits `max_len`,
    /// consecutive windows sharing `stride` tokens: Hugging Face's `only_second` truncation
    /// with overflowing tokens, as its question-answering pipeline uses it.
    ///
    /// # Errors
    /// If the question leaves no more than `stride` tokens of `max_len` for the context.
    pub fn encode_windows(
        &self,
        question: &str,
        context: &str,
        max_len: usize,
        stride: usize,
    ) -> Result<Vec<Encoding>> {
        let max_len = max_len.clamp(3, self.config.max_len);
        let (mut q, mut c) = (Vec::new(), Vec::new());
        self.pieces(question, max_len, &mut q);
        self.pieces(context, usize::MAX, &mut c);
        let window = max_len.saturating_sub(3 + q.len());
        if window <= stride {
            return Err(Error::input(format!(
                "the question takes {} of {max_len} tokens, leaving {window} for the context:                  not more than the stride of {stride}; shorten the question",
                q.len()
            )));
        }
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + window).min(c.len());
            let mut enc = Encoding::default();
            self.push(&mut enc, Piece::special(self.cls), 0);
            for &piece in &q {
                self.push(&mut enc, piece, 0);
            }
            self.push(&mut enc, Piece::special(self.sep), 0);
            for &piece in &c[start..end] {
                self.push(&mut enc, piece, 1);
            }
            self.push(&mut enc, Piece::special(self.sep), 1);
            windows.push(enc);
            if end >= c.len() {
                return Ok(windows);
            }
            start += window - stride;
        }
    }

    /// The token string of an id (for display).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// `[CLS] text [SEP]`, truncated to `max_len`.
    pub fn encode(&self, text: &str) -> Encoding {
        self.encode_at_most(text, self.config.max_len)
    }

    /// [`Tokenizer::encode`] truncated to at most `max_len` tokens (at least 2, at most the
    /// configured `max_len`): TF Hub's preprocessing to a fixed `seq_length`.
    pub fn encode_at_most(&self, text: &str, max_len: usize) -> Encoding {
        let budget = max_len.clamp(2, self.config.max_len) - 2;
        let mut a = Vec::new();
        self.pieces(text, budget, &mut a);
        let mut enc = Encoding::default();
        self.push(&mut enc, Piece::special(self.cls), 0);
        for &piece in &a {
            self.push(&mut enc, piece, 0);
        }
        self.push(&mut enc, Piece::special(self.sep), 0);
        enc
    }

    /// `[CLS] a [SEP] b [SEP]` with type ids 0 then 1, truncated longest-first as HF does.
    pub fn encode_pair(&self, a: &str, b: &str) -> Encoding {
        self.encode_pair_at_most(a, b, self.config.max_len)
    }

    /// [`Tokenizer::encode_pair`] truncated to at most `max_len` tokens (at least 3, at most
    /// the configured `max_len`).
    pub fn encode_pair_at_most(&self, a: &str, b: &str, max_len: usize) -> Encoding {
        let budget = max_len.clamp(3, self.config.max_len) - 3;
        // Each side can never keep more than `budget` tokens, so stop reading there.
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        self.pieces(a, budget + 1, &mut ta);
        self.pieces(b, budget + 1, &mut tb);
        let (n_a, n_b) = longest_first(ta.len(), tb.len(), budget);
        let mut enc = Encoding::default();
        self.push(&mut enc, Piece::special(self.cls), 0);
        for &piece in &ta[..n_a] {
            self.push(&mut enc, piece, 0);
        }
        self.push(&mut enc, Piece::special(self.sep), 0);
        for &piece in &tb[..n_b] {
            self.push(&mut enc, piece, 1);
        }
        self.push(&mut enc, Piece::special(self.sep), 1);
        enc
    }

    fn push(&self, enc: &mut Encoding, piece: Piece, type_id: u32) {
        // Budgets above keep every encoding within max_len <= MAX_SEQ_LEN, so this never drops.
        let pushed = enc.ids.push(piece.id).is_ok()
            && enc.type_ids.push(type_id).is_ok()
            && enc.offsets.push(piece.span).is_ok();
        debug_assert!(pushed, "encoding exceeded MAX_SEQ_LEN");
    }

    /// The word pieces of `text` without special tokens, at most `limit` of them.
    fn pieces(&self, text: &str, limit: usize, out: &mut Vec<Piece>) {
        let mut rest = text;
        // Chars of `text` before `rest`: offsets count chars, as Hugging Face's do.
        let mut base = 0u32;
        while !rest.is_empty() && out.len() < limit {
            match self.find_special(rest) {
                Some((pos, len, id)) => {
                    let before = &rest[..pos];
                    self.tokenize_segment(before, base, limit, out);
                    base = base.saturating_add(char_count(before));
                    let special = &rest[pos..pos + len];
                    let end = base.saturating_add(char_count(special));
                    if out.len() < limit {
                        out.push(Piece { id, span: (base, end) });
                    }
                    base = end;
                    rest = &rest[pos + len..];
                }
                None => {
                    self.tokenize_segment(rest, base, limit, out);
                    break;
                }
            }
        }
        // The last word may have added pieces past the limit; truncation keeps the first ones.
        out.truncate(limit);
    }

    /// Leftmost (then longest) occurrence of a special token: (byte pos, byte len, id).
    fn find_special(&self, text: &str) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for (s, id) in &self.specials {
            if let Some(pos) = text.find(s.as_str())
                && best.is_none_or(|(p, _, _)| pos < p)
            {
                best = Some((pos, s.len(), *id));
            }
        }
        best
    }

    /// Normalize → pre-tokenize → WordPiece one segment, streaming char by char; `base` is
    /// the segment's first char in the whole text.
    fn tokenize_segment(&self, segment: &str, base: u32, limit: usize, out: &mut Vec<Piece>) {
        let mut word = WordBuffer::new(self.config.max_input_chars_per_word);
        let emit = |word: &mut WordBuffer, out: &mut Vec<Piece>| {
            if !word.is_empty() {
                self.wordpiece(word, out);
                word.clear();
            }
        };
        for (c, at) in self.normalized(segment, base) {
            if out.len() >= limit {
                return;
            }
            if c.is_whitespace() {
                emit(&mut word, out);
            } else if is_bert_punctuation(c) {
                emit(&mut word, out);
                word.push(c, at);
                emit(&mut word, out);
            } else {
                word.push(c, at);
            }
        }
        emit(&mut word, out);
    }

    /// HF `BertNormalizer`, as a lazy char iterator: clean → CJK padding → NFD and strip
    /// accents → lowercase. Each char comes with the position (in chars, from `base`) of the
    /// original char it came from.
    fn normalized<'a>(
        &self,
        text: &'a str,
        base: u32,
    ) -> Box<dyn Iterator<Item = (char, u32)> + 'a> {
        let cfg = &self.config;
        let clean = cfg.clean_text;
        let at = move |i: usize| base.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
        let mut it: Box<dyn Iterator<Item = (char, u32)> + 'a> =
            Box::new(text.chars().enumerate().filter_map(move |(i, c)| {
                let at = at(i);
                if !clean {
                    Some((c, at))
                } else if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    None
                } else if is_whitespace(c) {
                    Some((' ', at))
                } else {
                    Some((c, at))
                }
            }));
        if cfg.handle_chinese_chars {
            it = Box::new(it.flat_map(|(c, at)| {
                let padded = is_chinese_char(c);
                [padded.then_some(' '), Some(c), padded.then_some(' ')]
                    .into_iter()
                    .flatten()
                    .map(move |c| (c, at))
            }));
        }
        if cfg.strip_accents.unwrap_or(cfg.lowercase) {
            it = Box::new(Nfd::new(it).filter(|(c, _)| !c.is_mark_nonspacing()));
        }
        if cfg.lowercase {
            it = Box::new(it.flat_map(|(c, at)| c.to_lowercase().map(move |l| (l, at))));
        }
        it
    }

    /// Greedy longest-match-first WordPiece; a word with any unmatched piece becomes `[UNK]`.
    fn wordpiece(&self, word: &WordBuffer, out: &mut Vec<Piece>) {
        let whole = (word.first, word.last.saturating_add(1));
        if word.overlong {
            out.push(Piece { id: self.unk, span: whole });
            return;
        }
        let w = word.text.as_str();
        let start_len = out.len();
        let mut piece =
            String::with_capacity(w.len() + self.config.continuing_subword_prefix.len());
        let mut start = 0;
        while start < w.len() {
            let mut end = w.len();
            let mut found = None;
            while start < end {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.config.continuing_subword_prefix);
                }
                piece.push_str(&w[start..end]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                // Step back one char (end is always a char boundary).
                end -= w[..end].chars().next_back().map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    // The piece's chars, mapped back to the original chars they came from.
                    let first = w[..start].chars().count();
                    let last = first + w[start..end].chars().count() - 1;
                    let span = (word.origin[first], word.origin[last].saturating_add(1));
                    out.push(Piece { id, span });
                    start = end;
                }
                None => {
                    out.truncate(start_len);
                    out.push(Piece { id: self.unk, span: whole });
                    return;
                }
            }
        }
    }
}

/// Lengths kept for a pair under HF's `LongestFirst` truncation.
fn longest_first(n_a: usize, n_b: usize, max: usize) -> (usize, usize) {
    if n_a + n_b <= max {
        return (n_a, n_b);
    }
    // Targets as HF computes them (n1 = the shorter side); a target may exceed the actual
    // length, in which case that side is kept whole.
    let swap = n_a > n_b;
    let mut n1 = n_a.min(n_b);
    let mut n2 = if n1 > max { n1 } else { n1.max(max - n1) };
    if n1 + n2 > max {
        n1 = max / 2;
        n2 = n1 + max % 2;
    }
    let (t_a, t_b) = if swap { (n2, n1) } else { (n1, n2) };
    (n_a.min(t_a), n_b.min(t_b))
}

/// One word piece and where it came from.
#[derive(Clone, Copy, Debug)]
struct Piece {
    id: u32,
    span: Span,
}

impl Piece {
    /// A token the template adds, from no text.
    fn special(id: u32) -> Piece {
        Piece { id, span: (0, 0) }
    }
}

fn char_count(s: &str) -> u32 {
    u32::try_from(s.chars().count()).unwrap_or(u32::MAX)
}

/// A word being collected; past `max_chars` chars only the fact that it is too long (and where
/// it starts and ends) is kept, so a 1 MB "word" costs no memory.
struct WordBuffer {
    text: String,
    /// For each char of `text`, the original char it came from.
    origin: Vec<u32>,
    first: u32,
    last: u32,
    chars: usize,
    max_chars: usize,
    overlong: bool,
}

impl WordBuffer {
    fn new(max_chars: usize) -> Self {
        WordBuffer {
            text: String::new(),
            origin: Vec::new(),
            first: 0,
            last: 0,
            chars: 0,
            max_chars,
            overlong: false,
        }
    }
    fn push(&mut self, c: char, at: u32) {
        if self.chars == 0 {
            self.first = at;
        }
        self.last = at;
        self.chars += 1;
        if self.chars > self.max_chars {
            self.overlong = true;
            self.text.clear();
            self.origin.clear();
        } else {
            self.text.push(c);
            self.origin.push(at);
        }
    }
    fn is_empty(&self) -> bool {
        self.chars == 0
    }
    fn clear(&mut self) {
        self.text.clear();
        self.origin.clear();
        self.chars = 0;
        self.overlong = false;
    }
}

/// Canonical decomposition (NFD) of a stream of chars, each carrying where it came from: every
/// char is decomposed, and each run of combining marks is put in canonical order (a stable sort
/// by combining class, as the Unicode algorithm does), the marks keeping their origin. The same
/// chars as `unicode_normalization`'s `nfd()`, which cannot say where each came from.
struct Nfd<I> {
    input: I,
    /// Decomposed chars not yet given out: `ready` of them are final; the rest are a run of
    /// marks that a later mark may still reorder.
    pending: std::collections::VecDeque<(char, u32)>,
    ready: usize,
}

impl<I: Iterator<Item = (char, u32)>> Nfd<I> {
    fn new(input: I) -> Self {
        Nfd { input, pending: Default::default(), ready: 0 }
    }

    /// Puts the marks after the last starter in canonical order and makes everything final.
    fn settle(&mut self) {
        use unicode_normalization::char::canonical_combining_class as ccc;
        if self.ready + 1 >= self.pending.len() {
            // No marks, or one: nothing to reorder.
            self.ready = self.pending.len();
            return;
        }
        let run = self.pending.make_contiguous();
        let marks = &mut run[self.ready..];
        marks.sort_by_key(|&(c, _)| ccc(c));
        self.ready = self.pending.len();
    }
}

impl<I: Iterator<Item = (char, u32)>> Iterator for Nfd<I> {
    type Item = (char, u32);

    fn next(&mut self) -> Option<(char, u32)> {
        use unicode_normalization::char::{canonical_combining_class as ccc, decompose_canonical};
        while self.ready == 0 {
            let Some((c, at)) = self.input.next() else {
                self.settle();
                break;
            };
            // A canonical decomposition is at most 4 chars long.
            let mut decomposed = heapless::Vec::<char, 8>::new();
            decompose_canonical(c, |d| {
                let _ = decomposed.push(d);
            });
            for d in decomposed {
                if ccc(d) == 0 {
                    // A starter ends the run of marks before it and is final itself: only
                    // marks move.
                    self.settle();
                    self.pending.push_back((d, at));
                    self.ready = self.pending.len();
                } else {
                    self.pending.push_back((d, at));
                }
            }
        }
        let out = self.pending.pop_front()?;
        self.ready = self.ready.saturating_sub(1);
        Some(out)
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_len: usize) -> TokenizerConfig {
        TokenizerConfig {
            lowercase: true,
            strip_accents: None,
            handle_chinese_chars: true,
            clean_text: true,
            unk_token: "[UNK]".into(),
            cls_token: "[CLS]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
            mask_token: "[MASK]".into(),
            continuing_subword_prefix: "##".into(),
            max_input_chars_per_word: 100,
            max_len,
        }
    }

    const VOCAB: &str =
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n!\nun\n##aff\n##able\ncafe\n中\n,";

    fn tok(max_len: usize) -> Tokenizer {
        Tokenizer::new(config(max_len), VOCAB).unwrap()
    }

    fn ids(t: &Tokenizer, s: &str) -> Vec<u32> {
        t.encode(s).ids.to_vec()
    }

    #[test]
    fn cases() {
        let t = tok(32);
        let cases: &[(&str, &[u32])] = &[
            ("", &[2, 3]),
            ("   \t\n ", &[2, 3]),
            ("Hello, World!", &[2, 5, 13, 6, 7, 3]),
            ("unaffable", &[2, 8, 9, 10, 3]),
            ("unaffablex", &[2, 1, 3]),
            ("Café", &[2, 11, 3]),
            ("中中", &[2, 12, 12, 3]),
            ("hello[SEP]world", &[2, 5, 3, 6, 3]),
            ("hello [sep]", &[2, 5, 1, 1, 1, 3]),
            ("hel\u{200b}lo", &[2, 5, 3]),
            ("\u{0}\u{fffd}", &[2, 3]),
        ];
        let mut failures = vec![];
        for (text, want) in cases {
            let got = ids(&t, text);
            if got != *want {
                failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn truncates_long_and_overlong_words() {
        let t = tok(5);
        assert_eq!(ids(&t, "hello hello hello hello"), vec![2, 5, 5, 5, 3]);
        let long = "a".repeat(1_000_000);
        assert_eq!(ids(&t, &long), vec![2, 1, 3]);
        let many = "hello ".repeat(200_000);
        assert_eq!(t.encode(&many).len(), 5);
    }

    #[test]
    fn pair_longest_first() {
        assert_eq!(longest_first(3, 4, 10), (3, 4));
        assert_eq!(longest_first(2, 20, 10), (2, 8));
        assert_eq!(longest_first(20, 2, 10), (8, 2));
        assert_eq!(longest_first(20, 30, 9), (4, 5));
        assert_eq!(longest_first(30, 20, 9), (5, 4));
        let t = tok(8);
        let e = t.encode_pair("hello hello hello", "world world world");
        assert_eq!(e.ids.to_vec(), vec![2, 5, 5, 3, 6, 6, 6, 3]);
        assert_eq!(e.type_ids.to_vec(), vec![0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Tokenizer::new(config(2), VOCAB).is_err());
        assert!(Tokenizer::new(config(10_000), VOCAB).is_err());
        assert!(Tokenizer::new(config(8), "a\nb").is_err());
    }
}
