//! The messages of pgoutput protocol version 1, and what can be wrong with their bytes.

use outboxd_core::Lsn;

/// One decoded pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgOutput<'a> {
    /// 'B': a transaction starts.
    Begin(Begin),
    /// 'C': the transaction ends.
    Commit(CommitMessage),
    /// 'O': the transaction was replicated from another origin.
    Origin(Origin),
    /// 'R': the layout of a table, sent before its first change in a session and after a schema change.
    Relation(Relation),
    /// 'Y': a non-built-in type used by a following Relation.
    Type(TypeMessage),
    /// 'I': a row was inserted.
    Insert(Insert<'a>),
    /// 'U': a row was updated.
    Update(Update<'a>),
    /// 'D': a row was deleted.
    Delete(Delete<'a>),
    /// 'T': tables were truncated.
    Truncate(Truncate),
    /// 'M': a logical decoding message (`pg_logical_emit_message`).
    Message(LogicalMessage<'a>),
}

/// 'B': the start of a committed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01 (the Postgres epoch).
    pub commit_time_pg_us: i64,
    /// Transaction id.
    pub xid: u32,
}

/// 'C': the end of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitMessage {
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End LSN of the commit record.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01.
    pub commit_time_pg_us: i64,
}

/// 'O': the origin of the transaction's changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The commit LSN on the origin server.
    pub commit_lsn: Lsn,
    /// Origin name.
    pub name: String,
}

/// 'R': a table's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID, used by later change messages.
    pub id: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting (`d`efault, `n`othing, `f`ull, `i`ndex).
    pub replica_identity: u8,
    /// Columns in attribute order (dropped and generated columns excluded by the server).
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationColumn {
    /// Flags: 1 when the column is part of the replica identity key.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// OID of the column's type.
    pub type_oid: u32,
    /// Type modifier (`atttypmod`).
    pub type_modifier: i32,
}

/// 'Y': a type's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeMessage {
    /// The type's OID.
    pub id: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// 'I': a new row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insert<'a> {
    /// OID of the table (see the matching [`Relation`]).
    pub relation_id: u32,
    /// The new row.
    pub new: TupleData<'a>,
}

/// Which old row image an update or delete carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldTuple {
    /// 'K': the replica identity key columns only.
    Key,
    /// 'O': the whole old row (`REPLICA IDENTITY FULL`).
    Full,
}

/// 'U': an updated row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    /// OID of the table.
    pub relation_id: u32,
    /// The old row image, when the replica identity sends one.
    pub old: Option<(OldTuple, TupleData<'a>)>,
    /// The new row.
    pub new: TupleData<'a>,
}

/// 'D': a deleted row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete<'a> {
    /// OID of the table.
    pub relation_id: u32,
    /// Which image follows.
    pub kind: OldTuple,
    /// The old row image.
    pub old: TupleData<'a>,
}

/// 'T': truncated tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    /// Option bits: 1 = CASCADE, 2 = RESTART IDENTITY.
    pub options: u8,
    /// OIDs of the truncated tables.
    pub relation_ids: Vec<u32>,
}

/// 'M': a logical decoding message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogicalMessage<'a> {
    /// True when emitted with `transactional = true` (delivered inside its committed transaction).
    pub transactional: bool,
    /// LSN of the message.
    pub lsn: Lsn,
    /// The message prefix.
    pub prefix: &'a str,
    /// The message content.
    pub content: &'a [u8],
}

/// The columns of one row image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TupleData<'a> {
    /// One value per column of the relation, in order.
    pub columns: Vec<ColumnValue<'a>>,
}

/// One column value of a row image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    /// 'n': SQL NULL.
    Null,
    /// 'u': a TOASTed value that did not change (the value itself is not sent).
    UnchangedToast,
    /// 't': the value in the type's text output format.
    Text(&'a [u8]),
    /// 'b': the value in the type's binary format (only with the `binary` option).
    Binary(&'a [u8]),
}

/// A pgoutput message that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is empty.
    #[error("empty pgoutput message")]
    Empty,
    /// The first byte is no pgoutput protocol version 1 message tag.
    #[error(
        "unknown pgoutput message tag 0x{0:02x}: is the slot's output plugin pgoutput, protocol version 1?"
    )]
    UnknownTag(u8),
    /// The message ends before a field it must contain.
    #[error("truncated pgoutput {message} message: {field} needs {needed} bytes at offset {offset}, {remaining} left")]
    Truncated {
        /// The message kind being decoded.
        message: &'static str,
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Where the field starts.
        offset: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A length or count is negative.
    #[error("pgoutput {message} message: negative {field} {value}")]
    NegativeLength {
        /// The message kind being decoded.
        message: &'static str,
        /// The field being read.
        field: &'static str,
        /// The value found.
        value: i64,
    },
    /// A name is not valid UTF-8.
    #[error("pgoutput {message} message: {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The message kind being decoded.
        message: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// A string has no terminating NUL byte.
    #[error("pgoutput {message} message: {field} has no terminating NUL byte")]
    Unterminated {
        /// The message kind being decoded.
        message: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// A marker byte is not one of the allowed values.
    #[error(
        "pgoutput {message} message: unexpected {field} byte 0x{found:02x} (expected one of {expected:?})"
    )]
    UnexpectedByte {
        /// The message kind being decoded.
        message: &'static str,
        /// The field being read.
        field: &'static str,
        /// The allowed bytes, as characters.
        expected: &'static str,
        /// The byte found.
        found: u8,
    },
    /// Bytes remain after the last field.
    #[error("pgoutput {message} message: {count} unexpected trailing bytes (protocol version mismatch?)")]
    TrailingBytes {
        /// The message kind being decoded.
        message: &'static str,
        /// How many bytes were left.
        count: usize,
    },
}
