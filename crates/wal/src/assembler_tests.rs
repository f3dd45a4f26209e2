use super::*;
use crate::pgoutput::{ColumnValue, Delete, Insert, OldTuple, RelationColumn, Truncate, TupleData, Update};

const OUTBOX: u32 = 500;
const OTHER: u32 = 600;

fn config(skip_through: Lsn, mode: OutboxMode) -> AssemblerConfig {
    AssemblerConfig {
        table: ("public".into(), "outbox".into()),
        columns: ColumnMapping::default(),
        mode,
        skip_through,
        start: Lsn(1000),
    }
}

fn relation(id: u32, name: &str, columns: &[&str]) -> Input<'static> {
    let columns = columns
        .iter()
        .map(|c| RelationColumn {
            flags: 0,
            name: c.to_string(),
            type_oid: 25,
            type_modifier: -1,
        })
        .collect();
    let rel = Relation {
        id,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: b'd',
        columns,
    };
    Input::Change(PgOutput::Relation(rel), Lsn(1))
}

const OUTBOX_COLUMNS: [&str; 5] = ["id", "aggregate_type", "aggregate_id", "event_type", "payload"];

fn begin(final_lsn: u64, xid: u32) -> Input<'static> {
    Input::Begin(Begin {
        final_lsn: Lsn(final_lsn),
        commit_time_pg_us: 1_000_000,
        xid,
    })
}

fn commit(commit_lsn: u64, end_lsn: u64) -> Input<'static> {
    let c = CommitMessage {
        commit_lsn: Lsn(commit_lsn),
        end_lsn: Lsn(end_lsn),
        commit_time_pg_us: 1_000_000,
    };
    Input::Commit(c)
}

fn tuple(values: &[&'static str]) -> TupleData<'static> {
    TupleData {
        columns: values.iter().map(|v| ColumnValue::Text(v.as_bytes())).collect(),
    }
}

fn insert(relation_id: u32, id: &'static str, at: u64) -> Input<'static> {
    let new = tuple(&[id, "order", "42", "Created", "{}"]);
    Input::Change(PgOutput::Insert(Insert { relation_id, new }), Lsn(at))
}

fn update(relation_id: u32) -> Input<'static> {
    Input::Change(
        PgOutput::Update(Update {
            relation_id,
            old: None,
            new: tuple(&["1", "a", "b", "c", "{}"]),
        }),
        Lsn(1),
    )
}

fn delete(relation_id: u32) -> Input<'static> {
    let old = tuple(&["1"]);
    Input::Change(
        PgOutput::Delete(Delete {
            relation_id,
            kind: OldTuple::Key,
            old,
        }),
        Lsn(1),
    )
}

fn message(transactional: bool, prefix: &'static str, content: &'static str) -> Input<'static> {
    let m = LogicalMessage {
        transactional,
        lsn: Lsn(77),
        prefix,
        content: content.as_bytes(),
    };
    Input::Message(m)
}

fn run(a: &mut Assembler, inputs: Vec<Input<'_>>) -> Vec<TxEvent> {
    let mut out = Vec::new();
    for input in inputs {
        a.handle(input, &mut out).expect("handled");
    }
    out
}

fn table_assembler(skip_through: u64) -> Assembler {
    let mut a = Assembler::new(config(Lsn(skip_through), OutboxMode::Table));
    run(
        &mut a,
        vec![
            relation(OUTBOX, "outbox", &OUTBOX_COLUMNS),
            relation(OTHER, "orders", &["id"]),
        ],
    );
    a
}

#[test]
fn an_outbox_transaction_is_begin_events_commit() {
    let mut a = table_assembler(0);
    let out = run(
        &mut a,
        vec![
            begin(2000, 7),
            insert(OUTBOX, "e1", 1900),
            insert(OUTBOX, "e2", 1950),
            commit(2000, 2040),
        ],
    );
    let unix_us = 1_000_000 + 946_684_800_000_000;
    assert_eq!(out.len(), 4);
    assert_eq!(
        out[0],
        TxEvent::Begin(TxBegin {
            xid: 7,
            final_lsn: Lsn(2000),
            commit_time_us: unix_us
        })
    );
    let TxEvent::Event(e) = &out[1] else {
        panic!("not an event: {:?}", out[1])
    };
    assert_eq!(
        (e.id.as_deref(), e.aggregate_id.as_deref(), e.lsn),
        (Some("e1"), Some("42"), Lsn(1900))
    );
    assert!(matches!(&out[2], TxEvent::Event(e) if e.id.as_deref() == Some("e2")));
    let want = Commit {
        xid: 7,
        commit_lsn: Lsn(2000),
        end_lsn: Lsn(2040),
        commit_time_us: unix_us,
        events: 2,
    };
    assert_eq!(out[3], TxEvent::Commit(want));
    assert_eq!(
        a.positions().confirmed(),
        Lsn(1000),
        "not confirmed before the sink says so"
    );
    a.sink_confirmed(Lsn(2040));
    assert_eq!(a.positions().confirmed(), Lsn(2040));
}

#[test]
fn updates_deletes_truncates_and_other_tables_are_ignored_and_counted() {
    let mut a = table_assembler(0);
    let truncate = Input::Change(
        PgOutput::Truncate(Truncate {
            options: 0,
            relation_ids: vec![OUTBOX],
        }),
        Lsn(1),
    );
    let out = run(
        &mut a,
        vec![
            begin(2000, 1),
            update(OUTBOX),
            delete(OUTBOX),
            insert(OTHER, "x", 0),
            update(OTHER),
            truncate,
            commit(2000, 2040),
        ],
    );
    assert!(out.is_empty(), "{out:?}");
    let s = a.counters.snapshot();
    assert_eq!(
        (s.ignored_updates, s.ignored_deletes, s.ignored_truncates),
        (1, 1, 1)
    );
    assert_eq!(
        (s.ignored_other_tables, s.quiet_transactions, s.transactions),
        (2, 1, 0)
    );
    assert_eq!(
        a.positions().confirmed(),
        Lsn(2040),
        "a quiet transaction is confirmable at once when idle"
    );
}

#[test]
fn begin_is_announced_lazily_before_the_first_event() {
    let mut a = table_assembler(0);
    let out = run(
        &mut a,
        vec![
            begin(2000, 1),
            update(OUTBOX),
            insert(OTHER, "x", 0),
            insert(OUTBOX, "e1", 0),
        ],
    );
    assert!(
        matches!(out.as_slice(), [TxEvent::Begin(_), TxEvent::Event(e)] if e.lsn == Lsn(2000)),
        "{out:?}"
    );
}

#[test]
fn quiet_transactions_wait_for_unconfirmed_emitted_ones() {
    let mut a = table_assembler(0);
    run(
        &mut a,
        vec![begin(2000, 1), insert(OUTBOX, "e1", 0), commit(2000, 2040)],
    );
    run(&mut a, vec![begin(3000, 2), update(OUTBOX), commit(3000, 3040)]);
    run(&mut a, vec![Input::KeepAlive(Lsn(5000))]);
    assert_eq!(a.positions().confirmed(), Lsn(1000));
    a.sink_confirmed(Lsn(2040));
    assert_eq!(
        a.positions().confirmed(),
        Lsn(5000),
        "the quiet transaction and the keepalive follow"
    );
}

#[test]
fn keepalives_inside_a_transaction_are_not_confirmable() {
    let mut a = table_assembler(0);
    run(&mut a, vec![Input::KeepAlive(Lsn(1500))]);
    assert_eq!(a.positions().confirmed(), Lsn(1500));
    run(
        &mut a,
        vec![
            begin(2000, 1),
            insert(OUTBOX, "e1", 0),
            Input::KeepAlive(Lsn(9000)),
        ],
    );
    assert!(a.in_transaction());
    run(&mut a, vec![commit(2000, 2040)]);
    a.sink_confirmed(Lsn(2040));
    assert_eq!(
        a.positions().confirmed(),
        Lsn(2040),
        "the in-transaction keepalive was not remembered"
    );
    assert_eq!(a.counters.snapshot().keepalives, 2);
}

#[test]
fn transactions_at_or_below_skip_through_are_skipped_and_confirmable() {
    let mut a = table_assembler(3040);
    let out = run(
        &mut a,
        vec![
            begin(2000, 1),
            insert(OUTBOX, "old1", 0),
            commit(2000, 2040),
            begin(3000, 2),
            insert(OUTBOX, "old2", 0),
            commit(3000, 3040),
            begin(4000, 3),
            insert(OUTBOX, "new", 0),
            commit(4000, 4040),
        ],
    );
    let ids: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            TxEvent::Event(e) => e.id.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["new"]);
    assert!(matches!(out.first(), Some(TxEvent::Begin(b)) if b.xid == 3));
    let s = a.counters.snapshot();
    assert_eq!(
        (s.skipped_transactions, s.skipped_events, s.transactions),
        (2, 2, 1)
    );
    assert_eq!(
        a.positions().confirmed(),
        Lsn(3040),
        "everything up to skip_through is confirmable"
    );
}

#[test]
fn skip_through_inside_a_commit_record_is_an_error() {
    let mut a = table_assembler(2010);
    let mut out = Vec::new();
    a.handle(begin(2000, 1), &mut out).unwrap();
    let err = a.handle(commit(2000, 2040), &mut out).unwrap_err();
    assert!(
        !err.is_retriable() && err.to_string().contains("skip_through 0/7DA"),
        "{err}"
    );
}

#[test]
fn protocol_violations_are_stream_errors() {
    let mut a = table_assembler(0);
    let mut out = Vec::new();
    assert!(
        matches!(a.handle(insert(999, "x", 0), &mut out), Err(WalError::Stream(m)) if m.contains("relation 999"))
    );
    assert!(matches!(
        a.handle(commit(1, 2), &mut out),
        Err(WalError::Stream(_))
    ));
    assert!(matches!(
        a.handle(insert(OUTBOX, "x", 0), &mut out),
        Err(WalError::Stream(_))
    ));
    a.handle(begin(2000, 1), &mut out).unwrap();
    assert!(matches!(
        a.handle(begin(3000, 2), &mut out),
        Err(WalError::Stream(_))
    ));
    assert!(matches!(
        a.handle(commit(2001, 2040), &mut out),
        Err(WalError::Stream(_))
    ));
}

#[test]
fn a_relation_lacking_a_mapped_column_is_a_config_error() {
    let mut a = Assembler::new(config(Lsn(0), OutboxMode::Table));
    let err = a
        .handle(
            relation(OUTBOX, "outbox", &["id", "aggregate_type"]),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, WalError::MissingColumn { table, column, .. } if table == "public.outbox" && column == "aggregate_id")
    );
    // Another table of the same name in another schema, or another table, is not the outbox.
    assert!(a
        .handle(relation(OTHER, "outbox2", &["id"]), &mut Vec::new())
        .is_ok());
}

#[test]
fn logical_messages_with_our_prefix_are_events() {
    let mut a = Assembler::new(config(
        Lsn(0),
        OutboxMode::LogicalMessage {
            prefix: "outbox".into(),
        },
    ));
    let out = run(
        &mut a,
        vec![
            message(false, "outbox", r#"{"id": "nt"}"#),
            begin(2000, 1),
            message(true, "other", r#"{"id": "o"}"#),
            message(true, "outbox", r#"{"id": "m1", "payload": {"a": 1}}"#),
            message(true, "outbox", "garbage"),
            commit(2000, 2040),
        ],
    );
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(matches!(&out[1], TxEvent::Event(e) if e.id.as_deref() == Some("m1") && e.lsn == Lsn(77)));
    assert!(
        matches!(&out[2], TxEvent::Event(e) if e.defect.is_some() && e.payload.as_deref() == Some(&b"garbage"[..]))
    );
    assert!(matches!(&out[3], TxEvent::Commit(c) if c.events == 2));
    let s = a.counters.snapshot();
    assert_eq!((s.ignored_messages, s.events, s.defects), (2, 2, 1));
    // In message mode, the outbox table's inserts are someone else's business.
    run(
        &mut a,
        vec![
            relation(OUTBOX, "outbox", &OUTBOX_COLUMNS),
            begin(3000, 2),
            insert(OUTBOX, "x", 0),
            commit(3000, 3040),
        ],
    );
    assert_eq!(a.counters.snapshot().ignored_other_tables, 1);
}
