//! G.711 µ-law (PCMU) and A-law (PCMA) sample companding.
//!
//! Hand-written rather than taken from a crate: the whole codec is two pairs
//! of pure functions over 8-bit codes (ITU-T G.711, segment/mantissa form),
//! short enough to review against the standard's tables, and the unit tests
//! check every one of the 256 codes and every 16-bit input.
//!
//! Linear samples are 16-bit. µ-law works on the top 14 bits, A-law on the
//! top 13 bits. Encoding takes the true magnitude of the sample, so the
//! quantisation is symmetric around zero (`encode(-x)` is the negative code of
//! `encode(x)`); µ-law's two zero codes (0xFF = +0, 0x7F = -0) both decode to 0.

/// µ-law bias added to the magnitude before finding the segment (33 in 14-bit units).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law can represent before the bias is added.
const ULAW_CLIP: i32 = 32_635;

/// Encodes one linear 16-bit sample as a µ-law code.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let value = i32::from(sample);
    let sign: u8 = if value < 0 { 0x80 } else { 0x00 };
    let biased = value.abs().min(ULAW_CLIP) + ULAW_BIAS; // 132..=32767
                                                         // Segment = position of the highest set bit above bit 7 (0..=7).
    let segment = (31 - biased.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = ((biased >> (segment + 3)) & 0x0F) as u8;
    !(sign | ((segment as u8) << 4) | mantissa)
}

/// Decodes one µ-law code to a linear 16-bit sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let segment = u32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS; // <= 32124
    let value = if code & 0x80 != 0 { -magnitude } else { magnitude };
    value as i16
}

/// Encodes one linear 16-bit sample as an A-law code (even bits inverted, as sent on the wire).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let value = i32::from(sample);
    let sign: u8 = if value >= 0 { 0x80 } else { 0x00 };
    let magnitude_13bit = (value.abs() >> 3).min(0x0FFF); // 0..=4095
    let (segment, mantissa) = if magnitude_13bit < 32 {
        (0u32, (magnitude_13bit >> 1) & 0x0F)
    } else {
        // 32..63 -> segment 1, 64..127 -> 2, ... 2048..4095 -> 7.
        let segment = (31 - magnitude_13bit.leading_zeros()) - 4;
        (segment, (magnitude_13bit >> segment) & 0x0F)
    };
    (sign | ((segment as u8) << 4) | mantissa as u8) ^ 0x55
}

/// Decodes one A-law code to a linear 16-bit sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let code = code ^ 0x55;
    let segment = u32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude_13bit = if segment == 0 { 2 * mantissa + 1 } else { (2 * mantissa + 33) << (segment - 1) };
    let magnitude = magnitude_13bit << 3; // <= 32256
    let value = if code & 0x80 != 0 { magnitude } else { -magnitude };
    value as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// µ-law decoded value from ITU-T G.711 table 2 (14-bit units): segment
    /// start values and step sizes, scaled by 4 to 16 bits.
    fn ulaw_table_value(code: u8) -> i32 {
        const START: [i32; 8] = [0, 33, 99, 231, 495, 1023, 2079, 4191];
        let inverted = !code;
        let segment = usize::from((inverted >> 4) & 7);
        let step = 2 << segment;
        let magnitude = START[segment] + i32::from(inverted & 0x0F) * step;
        4 * if inverted & 0x80 != 0 { -magnitude } else { magnitude }
    }

    /// A-law decoded value from ITU-T G.711 table 1 (13-bit units), scaled by 8.
    fn alaw_table_value(code: u8) -> i32 {
        const START: [i32; 8] = [1, 33, 66, 132, 264, 528, 1056, 2112];
        const STEP: [i32; 8] = [2, 2, 4, 8, 16, 32, 64, 128];
        let even_bits_restored = code ^ 0x55;
        let segment = usize::from((even_bits_restored >> 4) & 7);
        let magnitude = START[segment] + i32::from(even_bits_restored & 0x0F) * STEP[segment];
        8 * if even_bits_restored & 0x80 != 0 { magnitude } else { -magnitude }
    }

    /// Checks `encode` and `decode` against known (linear, code) and (code, linear) pairs.
    fn check_known(encode: fn(i16) -> u8, encoded: &[(i16, u8)], decode: fn(u8) -> i16, decoded: &[(u8, i16)]) {
        for &(linear, code) in encoded {
            assert_eq!(encode(linear), code, "encode {linear}");
        }
        for &(code, linear) in decoded {
            assert_eq!(decode(code), linear, "decode {code:#04x}");
        }
    }

    #[test]
    fn ulaw_known_encodings() {
        let encoded = [
            (0, 0xFF),
            (1, 0xFF),
            (-1, 0x7F),
            (32767, 0x80),
            (-32768, 0x00),
            // Segment 0/1 decision level is 31 in 14-bit units (= 124 in 16-bit).
            (123, 0xF0),
            (124, 0xEF),
            (-124, 0x6F),
            // Top segment starts at 4063 (14-bit) = 16252.
            (16251, 0x90),
            (16252, 0x8F),
        ];
        let decoded = [(0x80, 32124), (0x00, -32124), (0xFF, 0), (0x7F, 0)];
        check_known(linear_to_ulaw, &encoded, ulaw_to_linear, &decoded);
    }

    #[test]
    fn alaw_known_encodings() {
        let encoded = [
            (0, 0xD5),
            (1, 0xD5),
            (-1, 0x55),
            (15, 0xD5),
            (16, 0xD4),
            (-16, 0x54),
            (32767, 0xAA),
            (-32768, 0x2A),
            // Segment 0/1 boundary at 32 (13-bit) = 256.
            (255, 0xDA),
            (256, 0xC5),
        ];
        let decoded = [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256)];
        check_known(linear_to_alaw, &encoded, alaw_to_linear, &decoded);
    }

    #[test]
    fn decode_of_every_code_matches_g711_tables() {
        for code in 0..=255u8 {
            assert_eq!(i32::from(ulaw_to_linear(code)), ulaw_table_value(code), "ulaw {code:#04x}");
            assert_eq!(i32::from(alaw_to_linear(code)), alaw_table_value(code), "alaw {code:#04x}");
        }
    }

    #[test]
    fn encode_of_decode_is_identity_except_ulaw_negative_zero() {
        for code in 0..=255u8 {
            let expected_ulaw = if code == 0x7F { 0xFF } else { code };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), expected_ulaw, "ulaw {code:#04x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "alaw {code:#04x}");
        }
    }

    #[test]
    fn every_input_maps_to_a_nearest_level() {
        // Error must stay within half a quantisation step of the sample's
        // segment (plus the clipping region at the top).
        for sample in i16::MIN..=i16::MAX {
            let x = i32::from(sample);
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(sample)));
            let max_ulaw_error = if x.abs() > 32124 { 32768 - 32124 } else { ((x.abs() + 132) >> 4).max(4) };
            let max_alaw_error = if x.abs() > 32256 { 32768 - 32256 } else { (x.abs() >> 4).max(8) };
            assert!((u - x).abs() <= max_ulaw_error, "ulaw {x} -> {u}");
            assert!((a - x).abs() <= max_alaw_error, "alaw {x} -> {a}");
            assert_eq!(linear_to_ulaw(sample) & 0x80 == 0, x < 0, "ulaw sign of {x}");
        }
    }
}
