//! Decoder tests: messages captured from Postgres 15 (`pg_logical_slot_peek_binary_changes` with pgoutput,
//! proto_version 1, messages on) and handcrafted ones for what a plain table does not produce.

use super::*;
use outboxd_core::Lsn;
use proptest::prelude::*;

// Captured: an `outbox (id uuid, aggregate_type text, aggregate_id text, event_type text, payload jsonb,
// headers jsonb, m mood, b bytea, big text)` table with relation OID 16395 and an enum type `mood` (16390).
const BEGIN: &str = "420000000001972b5000030435e9fd21fc000002e3";
const TYPE: &str = "59000040067075626c6963006d6f6f6400";
const RELATION: &str =
    "520000400b7075626c6963006f7574626f78006400090169640000000b86ffffffff006167677265676174\
655f747970650000000019ffffffff006167677265676174655f69640000000019ffffffff006576656e745f74797065000000001\
9ffffffff007061796c6f61640000000edaffffffff00686561646572730000000edaffffffff006d0000004006ffffffff006200\
00000011ffffffff006269670000000019ffffffff";
const INSERT: &str = "490000400b4e0009740000002431313131313131312d313131312d313131312d313131312d313131313131\
31313131313174000000056f7264657274000000023432740000000c4f726465724372656174656474000000087b2261223a20317\
d6e74000000026f6b74000000065c78303130326e";
const COMMIT: &str = "43000000000001972b500000000001972b8000030435e9fd21fc";
const DELETE: &str = "440000400b4b0009740000002431313131313131312d313131312d313131312d313131312d313131313131\
3131313131316e6e6e6e6e6e6e6e";
const TRUNCATE: &str = "5400000001000000400b";
const MESSAGE_TX: &str = "4d010000000001973bf8706678000000000568656c6c6f";
const MESSAGE_NON_TX: &str = "4d000000000001973c6070667800000000026e74";

fn bytes(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text).expect("valid hex in test")
}

/// Handcrafted messages, for layouts a plain table does not produce.
struct Msg(Vec<u8>);

impl Msg {
    fn new(tag: u8) -> Self {
        Msg(vec![tag])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(s);
        self.0.push(0);
        self
    }
    fn text(self, v: &[u8]) -> Self {
        let mut m = self.u8(b't').i32(v.len() as i32);
        m.0.extend_from_slice(v);
        m
    }
}

fn update_with_old_key() -> Vec<u8> {
    Msg::new(b'U')
        .i32(7)
        .u8(b'K')
        .i16(2)
        .text(b"1")
        .u8(b'n')
        .u8(b'N')
        .i16(2)
        .text(b"1")
        .u8(b'u')
        .0
}

fn update_new_only() -> Vec<u8> {
    Msg::new(b'U')
        .i32(7)
        .u8(b'N')
        .i16(2)
        .u8(b'b')
        .i32(2)
        .u8(0xAB)
        .u8(0xCD)
        .u8(b'n')
        .0
}

fn origin() -> Vec<u8> {
    Msg::new(b'O').u64(0x1_0000_0010).str(b"node_a").0
}

fn all_samples() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        BEGIN,
        TYPE,
        RELATION,
        INSERT,
        COMMIT,
        DELETE,
        TRUNCATE,
        MESSAGE_TX,
        MESSAGE_NON_TX,
    ]
    .iter()
    .map(|h| bytes(h))
    .collect();
    v.extend([update_with_old_key(), update_new_only(), origin()]);
    v
}

#[test]
fn decodes_captured_begin_and_commit() {
    let PgOutput::Begin(b) = decode(&bytes(BEGIN)).unwrap() else {
        panic!("not a Begin")
    };
    assert_eq!((b.final_lsn, b.xid), (Lsn(0x1972B50), 739));
    assert_eq!(b.commit_time_pg_us, 0x030435e9fd21fc);
    let PgOutput::Commit(c) = decode(&bytes(COMMIT)).unwrap() else {
        panic!("not a Commit")
    };
    assert_eq!((c.commit_lsn, c.end_lsn), (Lsn(0x1972B50), Lsn(0x1972B80)));
    assert_eq!(c.commit_time_pg_us, b.commit_time_pg_us);
}

#[test]
fn decodes_captured_relation_and_type() {
    let PgOutput::Relation(r) = decode(&bytes(RELATION)).unwrap() else {
        panic!("not a Relation")
    };
    assert_eq!(
        (r.id, r.namespace.as_str(), r.name.as_str(), r.replica_identity),
        (16395, "public", "outbox", b'd')
    );
    let names: Vec<_> = r.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "aggregate_type",
            "aggregate_id",
            "event_type",
            "payload",
            "headers",
            "m",
            "b",
            "big"
        ]
    );
    let types: Vec<_> = r.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(types, [2950, 25, 25, 25, 3802, 3802, 16390, 17, 25]);
    assert_eq!(
        (r.columns[0].flags, r.columns[1].flags, r.columns[0].type_modifier),
        (1, 0, -1)
    );
    let data = bytes(TYPE);
    let t = decode(&data).unwrap();
    assert_eq!(
        t,
        PgOutput::Type(TypeMessage {
            id: 16390,
            namespace: "public".into(),
            name: "mood".into()
        })
    );
}

#[test]
fn decodes_captured_insert() {
    let data = bytes(INSERT);
    let PgOutput::Insert(i) = decode(&data).unwrap() else {
        panic!("not an Insert")
    };
    assert_eq!(i.relation_id, 16395);
    use ColumnValue::*;
    assert_eq!(
        i.new.columns,
        [
            Text(b"11111111-1111-1111-1111-111111111111"),
            Text(b"order"),
            Text(b"42"),
            Text(b"OrderCreated"),
            Text(br#"{"a": 1}"#),
            Null,
            Text(b"ok"),
            Text(br"\x0102"),
            Null
        ]
    );
}

#[test]
fn decodes_captured_delete_and_truncate() {
    let data = bytes(DELETE);
    let PgOutput::Delete(d) = decode(&data).unwrap() else {
        panic!("not a Delete")
    };
    assert_eq!(
        (d.relation_id, d.kind, d.old.columns.len()),
        (16395, OldTuple::Key, 9)
    );
    assert_eq!(
        d.old.columns[0],
        ColumnValue::Text(b"11111111-1111-1111-1111-111111111111")
    );
    assert!(d.old.columns[1..].iter().all(|c| *c == ColumnValue::Null));
    let data = bytes(TRUNCATE);
    let t = decode(&data).unwrap();
    assert_eq!(
        t,
        PgOutput::Truncate(Truncate {
            options: 0,
            relation_ids: vec![16395]
        })
    );
}

#[test]
fn decodes_captured_messages() {
    let data = bytes(MESSAGE_TX);
    let m = decode(&data).unwrap();
    let want = LogicalMessage {
        transactional: true,
        lsn: Lsn(0x1973BF8),
        prefix: "pfx",
        content: b"hello",
    };
    assert_eq!(m, PgOutput::Message(want));
    let data = bytes(MESSAGE_NON_TX);
    let PgOutput::Message(m) = decode(&data).unwrap() else {
        panic!("not a Message")
    };
    assert_eq!((m.transactional, m.prefix, m.content), (false, "pfx", &b"nt"[..]));
}

#[test]
fn decodes_updates_origin_and_binary_values() {
    let data = update_with_old_key();
    let PgOutput::Update(u) = decode(&data).unwrap() else {
        panic!("not an Update")
    };
    assert_eq!(u.relation_id, 7);
    let (kind, old) = u.old.expect("old key");
    assert_eq!(
        (kind, old.columns),
        (OldTuple::Key, vec![ColumnValue::Text(b"1"), ColumnValue::Null])
    );
    assert_eq!(
        u.new.columns,
        [ColumnValue::Text(b"1"), ColumnValue::UnchangedToast]
    );

    let data = update_new_only();
    let PgOutput::Update(u) = decode(&data).unwrap() else {
        panic!("not an Update")
    };
    assert_eq!(
        (u.old, u.new.columns),
        (None, vec![ColumnValue::Binary(&[0xAB, 0xCD]), ColumnValue::Null])
    );

    let full = Msg::new(b'U')
        .i32(7)
        .u8(b'O')
        .i16(1)
        .u8(b'n')
        .u8(b'N')
        .i16(1)
        .text(b"x")
        .0;
    let PgOutput::Update(u) = decode(&full).unwrap() else {
        panic!("not an Update")
    };
    assert_eq!(u.old.map(|(k, _)| k), Some(OldTuple::Full));

    let data = origin();
    let o = decode(&data).unwrap();
    assert_eq!(
        o,
        PgOutput::Origin(Origin {
            commit_lsn: Lsn(0x1_0000_0010),
            name: "node_a".into()
        })
    );
}

#[test]
fn every_truncation_of_every_message_is_an_error() {
    for sample in all_samples() {
        assert!(decode(&sample).is_ok());
        for len in 0..sample.len() {
            assert!(
                decode(&sample[..len]).is_err(),
                "prefix of {len} bytes of {sample:02x?} decoded"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for mut sample in all_samples() {
        sample.push(0);
        assert!(matches!(
            decode(&sample),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
    }
}

#[test]
fn malformed_inputs_are_named_errors() {
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
    assert_eq!(decode(b"Z"), Err(DecodeError::UnknownTag(b'Z')));
    // A relation name that is not UTF-8.
    let bad_name = Msg::new(b'R')
        .i32(1)
        .str(b"public")
        .str(&[0xff, 0xfe])
        .u8(b'd')
        .i16(0)
        .0;
    assert!(matches!(
        decode(&bad_name),
        Err(DecodeError::InvalidUtf8 {
            field: "relation name",
            ..
        })
    ));
    let bad_column = Msg::new(b'R')
        .i32(1)
        .str(b"s")
        .str(b"t")
        .u8(b'd')
        .i16(1)
        .u8(0)
        .str(&[0xc3])
        .0;
    assert!(matches!(
        decode(&bad_column),
        Err(DecodeError::InvalidUtf8 {
            field: "column name",
            ..
        })
    ));
    // Negative counts and lengths.
    let neg_cols = Msg::new(b'I').i32(1).u8(b'N').i16(-1).0;
    assert!(matches!(
        decode(&neg_cols),
        Err(DecodeError::NegativeLength { value: -1, .. })
    ));
    let neg_len = Msg::new(b'I').i32(1).u8(b'N').i16(1).u8(b't').i32(-5).0;
    assert!(matches!(
        decode(&neg_len),
        Err(DecodeError::NegativeLength { value: -5, .. })
    ));
    // A length far beyond the message.
    let huge = Msg::new(b'I').i32(1).u8(b'N').i16(1).u8(b't').i32(i32::MAX).0;
    assert!(
        matches!(decode(&huge), Err(DecodeError::Truncated { needed, .. }) if needed == i32::MAX as usize)
    );
    // Unknown markers.
    let kind = Msg::new(b'I').i32(1).u8(b'N').i16(1).u8(b'x').0;
    assert!(matches!(
        decode(&kind),
        Err(DecodeError::UnexpectedByte { found: b'x', .. })
    ));
    let marker = Msg::new(b'I').i32(1).u8(b'K').i16(0).0;
    assert!(matches!(
        decode(&marker),
        Err(DecodeError::UnexpectedByte { found: b'K', .. })
    ));
    let del = Msg::new(b'D').i32(1).u8(b'N').i16(0).0;
    assert!(matches!(
        decode(&del),
        Err(DecodeError::UnexpectedByte {
            message: "Delete",
            ..
        })
    ));
    let upd = Msg::new(b'U').i32(1).u8(b'X').0;
    assert!(matches!(
        decode(&upd),
        Err(DecodeError::UnexpectedByte {
            message: "Update",
            ..
        })
    ));
    let unterminated = Msg::new(b'Y').i32(1).u8(b'a').0;
    assert!(matches!(
        decode(&unterminated),
        Err(DecodeError::Unterminated { .. })
    ));
    // Errors explain themselves.
    let msg = DecodeError::UnknownTag(b'Z').to_string();
    assert!(msg.contains("0x5a") && msg.contains("pgoutput"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&data);
    }

    #[test]
    fn tagged_arbitrary_bytes_never_panic(
        tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
        rest in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let mut data = vec![tag];
        data.extend(rest);
        let _ = decode(&data);
    }

    #[test]
    fn mutated_samples_never_panic(which in 0usize..12, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut sample = all_samples().swap_remove(which);
        let i = at.index(sample.len());
        sample[i] = byte;
        let _ = decode(&sample);
    }
}
