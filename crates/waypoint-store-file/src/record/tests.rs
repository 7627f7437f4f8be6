//! The record codec: decode(encode(x)) == x for every record, a sealed frame decodes to its
//! numbers, arbitrary bytes never panic, and any single flipped bit is detected.

use proptest::prelude::*;

use crate::record::{self, RawRecord};

fn any_record() -> impl Strategy<Value = RawRecord> {
    (
        (1u32.., 1u32.., any::<[u8; 16]>(), any::<prop::sample::Index>()),
        (-62_135_596_800i64..253_402_300_799i64, 0u32..1_000_000_000),
        ("[A-Za-z0-9_-]{1,64}", "[a-z_]{1,40}", any::<u16>()),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(
            |((position, version, id, batch), (secs, nanos), (plan_id, event_type, schema_version), data)| RawRecord {
                position,
                version,
                batch_start: 1 + batch.index(position as usize) as u32,
                event_id: uuid::Uuid::from_bytes(id),
                recorded_at: chrono::DateTime::from_timestamp(secs, nanos).unwrap(),
                plan_id,
                event_type,
                schema_version,
                data,
            },
        )
}

proptest! {
    #[test]
    fn decode_inverts_encode(record in any_record()) {
        let bytes = record.encode().unwrap();
        let (decoded, len) = record::decode(&bytes).unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(decoded, record);
    }

    #[test]
    fn a_sealed_frame_decodes_to_its_numbers(record in any_record()) {
        let mut bytes = RawRecord { position: 0, version: 0, batch_start: 0, ..record.clone() }.encode().unwrap();
        record::seal(&mut bytes, record.position, record.version, record.batch_start);
        prop_assert_eq!(record::decode(&bytes).unwrap().0, record);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        crate::fuzz_decode(&bytes);
    }

    #[test]
    fn any_single_flipped_bit_is_detected(record in any_record(), bit in any::<prop::sample::Index>()) {
        let mut bytes = record.encode().unwrap();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(record::decode(&bytes).is_err());
    }
}
