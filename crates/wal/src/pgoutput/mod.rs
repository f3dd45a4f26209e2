//! A pure decoder for the `pgoutput` logical replication protocol, version 1: bytes in, typed messages out.
//!
//! Every malformed input (truncated, unknown tag, negative or oversized lengths, non-UTF-8 names, bytes left
//! over) is a [`DecodeError`]; nothing here panics. Tuple values borrow from the input buffer, so decoding an
//! insert copies nothing but the column list.
//!
//! Layouts follow "Logical Streaming Replication Protocol / Message Formats" of the Postgres manual (protocol
//! version 1: no streamed in-progress transactions, so no xid field inside change messages).

mod reader;
#[cfg(test)]
mod tests;
mod types;

use reader::ByteReader;
pub use types::*;

/// Decodes one pgoutput (protocol version 1) message.
pub fn decode(data: &[u8]) -> Result<PgOutput<'_>, DecodeError> {
    let (&tag, _) = data.split_first().ok_or(DecodeError::Empty)?;
    let message = match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        other => return Err(DecodeError::UnknownTag(other)),
    };
    let mut r = ByteReader::new(data, 1, message);
    let decoded = match tag {
        b'B' => PgOutput::Begin(Begin {
            final_lsn: r.lsn("final_lsn")?,
            commit_time_pg_us: r.i64("commit_time")?,
            xid: r.u32("xid")?,
        }),
        b'C' => PgOutput::Commit(CommitMessage {
            // One flags byte, unused by Postgres (always 0): read past, not kept.
            commit_lsn: r.u8("flags").and_then(|_| r.lsn("commit_lsn"))?,
            end_lsn: r.lsn("end_lsn")?,
            commit_time_pg_us: r.i64("commit_time")?,
        }),
        b'O' => PgOutput::Origin(Origin {
            commit_lsn: r.lsn("commit_lsn")?,
            name: r.string("name")?.into(),
        }),
        b'R' => PgOutput::Relation(relation(&mut r)?),
        b'Y' => PgOutput::Type(TypeMessage {
            id: r.u32("type_oid")?,
            namespace: r.string("namespace")?.into(),
            name: r.string("name")?.into(),
        }),
        b'I' => {
            let relation_id = r.u32("relation_id")?;
            r.expect(b'N', "new tuple marker", "N")?;
            PgOutput::Insert(Insert {
                relation_id,
                new: tuple(&mut r)?,
            })
        }
        b'U' => PgOutput::Update(update(&mut r)?),
        b'D' => {
            let relation_id = r.u32("relation_id")?;
            let kind = old_kind("Delete", r.u8("old tuple marker")?)?;
            PgOutput::Delete(Delete {
                relation_id,
                kind,
                old: tuple(&mut r)?,
            })
        }
        b'T' => {
            let count = r.count_i32("relation count")?;
            let options = r.u8("options")?;
            let relation_ids = (0..count)
                .map(|_| r.u32("relation_id"))
                .collect::<Result<_, _>>()?;
            PgOutput::Truncate(Truncate {
                options,
                relation_ids,
            })
        }
        _ => {
            let flags = r.u8("flags")?;
            let lsn = r.lsn("lsn")?;
            let prefix = r.string("prefix")?;
            let len = r.count_i32("content length")?;
            let content = r.bytes(len, "content")?;
            PgOutput::Message(LogicalMessage {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content,
            })
        }
    };
    r.finish()?;
    Ok(decoded)
}

fn relation(r: &mut ByteReader<'_>) -> Result<Relation, DecodeError> {
    let id = r.u32("relation_id")?;
    let namespace = r.string("namespace")?.to_owned();
    let name = r.string("relation name")?.to_owned();
    let replica_identity = r.u8("replica identity")?;
    let count = r.count_i16("column count")?;
    // Each column takes at least 10 bytes: never reserve more than the message could hold.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
    for _ in 0..count {
        columns.push(RelationColumn {
            flags: r.u8("column flags")?,
            name: r.string("column name")?.to_owned(),
            type_oid: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update<'a>(r: &mut ByteReader<'a>) -> Result<Update<'a>, DecodeError> {
    let relation_id = r.u32("relation_id")?;
    let marker = r.u8("tuple marker")?;
    let old = match marker {
        b'N' => None,
        b'K' | b'O' => {
            let old = (old_kind("Update", marker)?, tuple(r)?);
            r.expect(b'N', "new tuple marker", "N")?;
            Some(old)
        }
        found => {
            return Err(DecodeError::UnexpectedByte {
                message: "Update",
                field: "tuple marker",
                expected: "KON",
                found,
            })
        }
    };
    Ok(Update {
        relation_id,
        old,
        new: tuple(r)?,
    })
}

fn old_kind(message: &'static str, marker: u8) -> Result<OldTuple, DecodeError> {
    match marker {
        b'K' => Ok(OldTuple::Key),
        b'O' => Ok(OldTuple::Full),
        found => Err(DecodeError::UnexpectedByte {
            message,
            field: "old tuple marker",
            expected: "KO",
            found,
        }),
    }
}

fn tuple<'a>(r: &mut ByteReader<'a>) -> Result<TupleData<'a>, DecodeError> {
    let count = r.count_i16("tuple column count")?;
    let mut columns = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let value = match r.u8("column kind")? {
            b'n' => ColumnValue::Null,
            b'u' => ColumnValue::UnchangedToast,
            b't' => {
                let len = r.count_i32("column length")?;
                ColumnValue::Text(r.bytes(len, "column value")?)
            }
            b'b' => {
                let len = r.count_i32("column length")?;
                ColumnValue::Binary(r.bytes(len, "column value")?)
            }
            found => {
                return Err(DecodeError::UnexpectedByte {
                    message: r.message(),
                    field: "column kind",
                    expected: "nutb",
                    found,
                })
            }
        };
        columns.push(value);
    }
    Ok(TupleData { columns })
}
