//! Pure transaction assembly: decoded pgoutput messages and keepalives in, [`TxEvent`]s and confirmable
//! positions out. No I/O, so every rule of the stage is unit-tested here.
//!
//! Rules: a transaction is announced (`Begin`) only before its first outbox event, and closed (`Commit`) only
//! when it was announced; a transaction whose end LSN is at or below `skip_through` is not emitted at all;
//! updates, deletes and truncates of the outbox, other tables' changes and foreign logical messages are
//! counted and ignored. Positions without outbox data feed [`Positions::quiet`].

use crate::config::OutboxMode;
use crate::mapping::{ColumnMapping, ResolvedMapping};
use crate::message::event_from_message;
use crate::pgoutput::{Begin, CommitMessage, LogicalMessage, PgOutput, Relation};
use crate::progress::{Counters, Positions};
use crate::WalError;
use outboxd_core::{Commit, Lsn, OutboxEvent, TxBegin, TxEvent};
use std::collections::HashMap;
use std::sync::Arc;

/// Microseconds between 1970-01-01 and 2000-01-01 (the Postgres epoch).
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// One item of the replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
///
/// One representation from the socket on: the replication client decodes Begin, Commit and logical messages
/// itself, and they come here with exactly its fields; every other pgoutput message comes as decoded from
/// its XLogData, with that XLogData's position.
pub enum Input<'a> {
    /// A transaction starts.
    Begin(Begin),
    /// It ends.
    Commit(CommitMessage),
    /// A logical message (`pg_logical_emit_message`), at its own LSN.
    Message(LogicalMessage<'a>),
    /// A pgoutput message decoded from an XLogData (Relation, Insert, Update, Delete, Truncate, Type, Origin;
    /// a Begin, Commit or Message found there is taken as its own variant), with the position of the XLogData
    /// it came in (an insert's own LSN).
    Change(PgOutput<'a>, Lsn),
    /// A server keepalive with its `wal_end`.
    KeepAlive(Lsn),
}

/// What the assembler needs to know.
#[derive(Clone, Debug)]
pub struct AssemblerConfig {
    /// The outbox table's (schema, name).
    pub table: (String, String),
    /// Column mapping (table mode).
    pub columns: ColumnMapping,
    /// Table or logical-message outbox.
    pub mode: OutboxMode,
    /// Transactions ending at or below this are skipped (the sink's checkpoint).
    pub skip_through: Lsn,
    /// The slot's confirmed position when streaming started.
    pub start: Lsn,
}

#[derive(Debug)]
enum Rel {
    Outbox(ResolvedMapping),
    Other,
}

#[derive(Debug)]
struct OpenTx {
    begin: Begin,
    announced: bool,
    events: u64,
    skip: bool,
}

/// Turns the replication stream into the stage's output.
#[derive(Debug)]
pub struct Assembler {
    config: AssemblerConfig,
    relations: HashMap<u32, Rel>,
    open: Option<OpenTx>,
    positions: Positions,
    counters: Arc<Counters>,
}

impl Assembler {
    /// A fresh assembler (a new replication session: no relation known yet).
    pub fn new(config: AssemblerConfig) -> Self {
        Self::with_counters(config, Arc::default())
    }

    pub(crate) fn with_counters(config: AssemblerConfig, counters: Arc<Counters>) -> Self {
        let positions = Positions::starting_at(config.start);
        Assembler {
            config,
            relations: HashMap::new(),
            open: None,
            positions,
            counters,
        }
    }

    /// The confirmable position bookkeeping.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// The sink committed everything up to `lsn`.
    pub fn sink_confirmed(&mut self, lsn: Lsn) {
        self.positions.sink_confirmed(lsn);
    }

    /// True between a Begin and its Commit.
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Handles one stream item, appending what to emit to `out` (at most two events per item).
    pub fn handle(&mut self, input: Input<'_>, out: &mut Vec<TxEvent>) -> Result<(), WalError> {
        match input {
            Input::KeepAlive(wal_end) => {
                Counters::bump(&self.counters.keepalives);
                // Inside a transaction, wal_end may lie past changes still to come.
                if self.open.is_none() {
                    self.positions.quiet(wal_end);
                }
            }
            Input::Begin(begin) => {
                if let Some(open) = &self.open {
                    return Err(stream_error(format!(
                        "Begin of xid {} inside xid {}",
                        begin.xid, open.begin.xid
                    )));
                }
                let skip = begin.final_lsn < self.config.skip_through;
                self.open = Some(OpenTx {
                    begin,
                    announced: false,
                    events: 0,
                    skip,
                });
            }
            Input::Commit(commit) => self.commit(commit, out)?,
            Input::Change(PgOutput::Relation(rel), _) => self.relation(rel)?,
            Input::Change(PgOutput::Insert(insert), at) => match self.relation_of(insert.relation_id)? {
                Rel::Outbox(mapping) => {
                    let event = mapping.map_row(&insert.new, at);
                    self.event(event, out)?;
                }
                Rel::Other => Counters::bump(&self.counters.ignored_other_tables),
            },
            Input::Change(PgOutput::Update(u), _) => match self.relation_of(u.relation_id)? {
                Rel::Outbox(_) => Counters::bump(&self.counters.ignored_updates),
                Rel::Other => Counters::bump(&self.counters.ignored_other_tables),
            },
            Input::Change(PgOutput::Delete(d), _) => match self.relation_of(d.relation_id)? {
                Rel::Outbox(_) => Counters::bump(&self.counters.ignored_deletes),
                Rel::Other => Counters::bump(&self.counters.ignored_other_tables),
            },
            Input::Change(PgOutput::Truncate(t), _) => {
                let outbox = t
                    .relation_ids
                    .iter()
                    .any(|id| matches!(self.relations.get(id), Some(Rel::Outbox(_))));
                Counters::bump(if outbox {
                    &self.counters.ignored_truncates
                } else {
                    &self.counters.ignored_other_tables
                });
            }
            Input::Message(m) => self.message(m, out)?,
            Input::Change(PgOutput::Type(_) | PgOutput::Origin(_), _) => {}
            Input::Change(PgOutput::Begin(b), _) => self.handle(Input::Begin(b), out)?,
            Input::Change(PgOutput::Commit(c), _) => self.handle(Input::Commit(c), out)?,
            Input::Change(PgOutput::Message(m), _) => self.handle(Input::Message(m), out)?,
        }
        Ok(())
    }

    fn relation(&mut self, rel: Relation) -> Result<(), WalError> {
        let (schema, name) = &self.config.table;
        let is_outbox =
            matches!(self.config.mode, OutboxMode::Table) && rel.namespace == *schema && rel.name == *name;
        let entry = if is_outbox {
            let columns: Vec<(&str, u32)> = rel
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.type_oid))
                .collect();
            Rel::Outbox(
                self.config
                    .columns
                    .resolve(&format!("{schema}.{name}"), &columns)?,
            )
        } else {
            Rel::Other
        };
        self.relations.insert(rel.id, entry);
        Ok(())
    }

    fn relation_of(&self, id: u32) -> Result<&Rel, WalError> {
        self.relations.get(&id).ok_or_else(|| {
            stream_error(format!(
                "a change to relation {id} came before its Relation message"
            ))
        })
    }

    fn message(&mut self, m: LogicalMessage<'_>, out: &mut Vec<TxEvent>) -> Result<(), WalError> {
        let ours = match &self.config.mode {
            OutboxMode::LogicalMessage { prefix } => m.transactional && m.prefix == prefix,
            OutboxMode::Table => false,
        };
        if ours {
            self.event(event_from_message(m.content, m.lsn), out)
        } else {
            Counters::bump(&self.counters.ignored_messages);
            Ok(())
        }
    }

    fn event(&mut self, mut event: OutboxEvent, out: &mut Vec<TxEvent>) -> Result<(), WalError> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| stream_error("an outbox change outside a transaction".into()))?;
        if open.skip {
            Counters::bump(&self.counters.skipped_events);
            return Ok(());
        }
        if !open.announced {
            open.announced = true;
            out.push(TxEvent::Begin(TxBegin {
                xid: open.begin.xid,
                final_lsn: open.begin.final_lsn,
                commit_time_us: open.begin.commit_time_pg_us.saturating_add(PG_EPOCH_UNIX_US),
            }));
        }
        open.events += 1;
        if event.lsn == Lsn::ZERO {
            // The server sent no position for it (an XLogData with wal_start 0): the transaction's commit LSN
            // is the best stand-in.
            event.lsn = open.begin.final_lsn;
        }
        Counters::bump(&self.counters.events);
        if event.defect.is_some() {
            Counters::bump(&self.counters.defects);
        }
        out.push(TxEvent::Event(event));
        Ok(())
    }

    fn commit(&mut self, commit: CommitMessage, out: &mut Vec<TxEvent>) -> Result<(), WalError> {
        let open = self
            .open
            .take()
            .ok_or_else(|| stream_error("Commit without a Begin".into()))?;
        if commit.commit_lsn != open.begin.final_lsn {
            return Err(stream_error(format!(
                "Commit at {} does not match its Begin's final LSN {}",
                commit.commit_lsn, open.begin.final_lsn
            )));
        }
        let c = &self.counters;
        if open.skip {
            if commit.end_lsn > self.config.skip_through {
                return Err(stream_error(format!(
                    "skip_through {} lies inside the commit record {}..{} of xid {}: it is not a transaction end \
                     LSN (is the checkpoint from another database?)",
                    self.config.skip_through, commit.commit_lsn, commit.end_lsn, open.begin.xid
                )));
            }
            Counters::bump(&c.skipped_transactions);
            self.positions.quiet(commit.end_lsn);
        } else if open.announced {
            Counters::bump(&c.transactions);
            out.push(TxEvent::Commit(Commit {
                xid: open.begin.xid,
                commit_lsn: commit.commit_lsn,
                end_lsn: commit.end_lsn,
                commit_time_us: commit.commit_time_pg_us.saturating_add(PG_EPOCH_UNIX_US),
                events: open.events,
            }));
            self.positions.emitted(commit.end_lsn);
        } else {
            Counters::bump(&c.quiet_transactions);
            self.positions.quiet(commit.end_lsn);
        }
        Ok(())
    }
}

fn stream_error(message: String) -> WalError {
    WalError::Stream(message)
}

#[cfg(test)]
#[path = "assembler_tests.rs"]
mod tests;
