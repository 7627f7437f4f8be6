//! Known answers for CRC-32C (Castagnoli): a wrong polynomial, reflection or final XOR would
//! still pass every round-trip test, but not these. Vectors: the standard check value and
//! RFC 3720 (iSCSI), appendix B.4.

use super::{checksum, extend};

#[test]
fn the_standard_check_value_over_123456789() {
    assert_eq!(checksum(b"123456789"), 0xE306_9283);
}

#[test]
fn the_rfc_3720_vectors() {
    let ascending: Vec<u8> = (0..32).collect();
    let descending: Vec<u8> = (0..32).rev().collect();
    let cases: [(&str, &[u8], u32); 5] = [
        ("empty", &[], 0x0000_0000),
        ("32 zero bytes", &[0x00; 32], 0x8A91_36AA),
        ("32 0xFF bytes", &[0xFF; 32], 0x62A8_AB43),
        ("32 ascending bytes", &ascending, 0x46DD_794E),
        ("32 descending bytes", &descending, 0x113F_DB5C),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(checksum(bytes), want, "{name}: got {:#010X}", checksum(bytes));
    }
}

#[test]
fn extending_in_pieces_equals_one_pass_at_every_split() {
    // Implementations take 8 or 16 bytes at a time: splits at every offset exercise the remainder
    // paths.
    let bytes: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
    let whole = checksum(&bytes);
    for split in 0..=bytes.len() {
        assert_eq!(extend(checksum(&bytes[..split]), &bytes[split..]), whole, "split at {split}");
    }
    // The bytewise definition, for lengths that are not a multiple of 8 or 16.
    for len in 0..=bytes.len() {
        let bitwise = bytes[..len].iter().fold(!0u32, |mut crc, &byte| {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
            crc
        });
        assert_eq!(checksum(&bytes[..len]), !bitwise, "length {len}");
    }
}
