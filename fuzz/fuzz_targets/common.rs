//! What the targets share: the committed tiny bundle (models/tiny-bert-cls compiled to int8,
//! fuzz/seeds/bundle/) and a way past the bundle checksum.

use bertlite::Bundle;

pub const TINY_BUNDLE: &[u8] = include_bytes!("../seeds/bundle/tiny-int8.blt");

/// The tiny bundle, parsed.
#[allow(dead_code)]
pub fn tiny() -> Bundle {
    Bundle::from_bytes(TINY_BUNDLE).expect("the committed tiny bundle reads")
}

/// Makes `bytes` pass the header's length and checksum checks (bundle.rs layout: total length
/// at 16, CRC-32 of everything but itself at 24), so mutations reach the sections behind them.
#[allow(dead_code)]
pub fn fix_header(bytes: &mut [u8]) {
    if bytes.len() < 32 {
        return;
    }
    let len = bytes.len() as u64;
    bytes[16..24].copy_from_slice(&len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..24]);
    h.update(&bytes[28..]);
    let crc = h.finalize();
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
}
