//! Any bytes, as one text or as a pair, under varied tokenizer settings: never panics; every
//! encoding is `[CLS] … [SEP]` with ids inside the vocabulary, at most `max_len` tokens, and
//! type ids 0 then 1; the same text always gives the same encoding.
#![no_main]

use bertlite::internal::{Tokenizer, TokenizerConfig};
use libfuzzer_sys::fuzz_target;

const VOCAB: &str = include_str!("../../models/tiny-bert-cls/vocab.txt");

fn tokenizer(flags: u8, len: u8) -> Tokenizer {
    let config = TokenizerConfig {
        lowercase: flags & 1 != 0,
        strip_accents: [None, Some(true), Some(false)][usize::from(flags >> 1 & 3) % 3],
        handle_chinese_chars: flags & 8 != 0,
        clean_text: flags & 16 != 0,
        unk_token: "[UNK]".into(),
        cls_token: "[CLS]".into(),
        sep_token: "[SEP]".into(),
        pad_token: "[PAD]".into(),
        mask_token: "[MASK]".into(),
        continuing_subword_prefix: "##".into(),
        max_input_chars_per_word: if flags & 32 != 0 { 100 } else { 4 },
        // 3 ..= 512: the smallest allowed, typical, and the most the runtime takes.
        max_len: (3 + usize::from(len) * 2).min(bertlite::internal::MAX_SEQ_LEN),
    };
    Tokenizer::new(config, VOCAB).expect("a valid configuration")
}

fuzz_target!(|data: &[u8]| {
    let [flags, len, rest @ ..] = data else { return };
    let t = tokenizer(*flags, *len);
    let text = String::from_utf8_lossy(rest);
    let pair = flags & 64 != 0;
    let enc = match (pair, text.split_once('\t')) {
        (true, Some((a, b))) => t.encode_pair(a, b),
        _ => t.encode(&text),
    };
    let n = enc.len();
    let max_len = t.config().max_len;
    assert!((2..=max_len).contains(&n), "{n} tokens, max_len {max_len}");
    assert_eq!(enc.type_ids.len(), n);
    assert!(enc.ids.iter().all(|&id| (id as usize) < t.vocab_size()));
    assert_eq!(t.token(enc.ids[0]), Some("[CLS]"));
    assert_eq!(t.token(enc.ids[n - 1]), Some("[SEP]"));
    assert!(enc.type_ids.windows(2).all(|w| w[0] <= w[1]) && enc.type_ids.iter().all(|&t| t <= 1));
    let again = match (pair, text.split_once('\t')) {
        (true, Some((a, b))) => t.encode_pair(a, b),
        _ => t.encode(&text),
    };
    assert_eq!(enc, again, "not deterministic");
});
