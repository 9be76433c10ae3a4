//! Symmetric int8 quantization, one scale per row (= per output channel of a Linear weight,
//! per token of an embedding table).

/// Largest error a round trip may add, in units of a row's scale: round-to-nearest.
pub const ROUND_TRIP_ERROR: f32 = 0.5;

pub struct QuantizedRows {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

/// `x ≈ q * scale` with `q ∈ [-127, 127]`, `scale = max|row| / 127` (zero point 0, so the
/// integer product needs no offset correction).
pub fn quantize_rows(data: &[f32], rows: usize, cols: usize) -> QuantizedRows {
    assert_eq!(data.len(), rows * cols, "matrix data length");
    let mut values = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(rows);
    for row in data.chunks_exact(cols) {
        let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        values.extend(row.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    QuantizedRows { values, scales }
}

pub fn dequantize_rows(q: &QuantizedRows, cols: usize) -> Vec<f32> {
    q.values.chunks_exact(cols).zip(&q.scales).flat_map(|(r, s)| r.iter().map(move |&v| v as f32 * s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values_and_bound() {
        let data = [1.27, -0.635, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0];
        let q = quantize_rows(&data, 2, 4);
        assert_eq!(q.values[..4], [127, -64, 0, 1]);
        assert_eq!(q.values[4..], [0, 0, 0, 0]);
        assert!((q.scales[0] - 0.01).abs() < 1e-7);
        assert_eq!(q.scales[1], 1.0);
        // Round trip within half a step on every element of a varied matrix.
        let data: Vec<f32> = (0..64 * 48).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
        let q = quantize_rows(&data, 64, 48);
        let back = dequantize_rows(&q, 48);
        for (r, (orig, deq)) in data.chunks(48).zip(back.chunks(48)).enumerate() {
            for (a, b) in orig.iter().zip(deq) {
                assert!((a - b).abs() <= q.scales[r] * ROUND_TRIP_ERROR + 1e-6);
            }
        }
    }
}
