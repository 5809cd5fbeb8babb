//! A shard's side of the log: effect records appended at the store's one mutation choke
//! point (`Db`), handed to the WAL thread once per loop turn.

use coreshard_engine::wal::ShardLog;

use super::effect::{self, kind, Effect};

/// One shard's journal.
pub struct Journal {
    log: ShardLog,
    scratch: Vec<u8>,
    /// Off while replaying or applying what another record already covers.
    pub enabled: bool,
    /// Records appended (the `--save` schedule counts changes with it).
    pub appended: u64,
}

impl Journal {
    /// A journal writing to `log`.
    pub fn new(log: ShardLog) -> Self {
        Journal {
            log,
            scratch: Vec::with_capacity(256),
            enabled: true,
            appended: 0,
        }
    }

    fn append(&mut self, kind: u8) -> u64 {
        self.appended += 1;
        let lsn = self.log.append(kind, &self.scratch);
        self.scratch.clear();
        lsn
    }

    /// SET of a value with a deadline.
    pub fn set(&mut self, key: &[u8], value: &[u8], deadline: u64) -> u64 {
        effect::set_payload(&mut self.scratch, key, value, deadline);
        self.append(kind::SET)
    }

    /// DEL.
    pub fn del(&mut self, key: &[u8]) -> u64 {
        effect::key_payload(&mut self.scratch, key);
        self.append(kind::DEL)
    }

    /// A new deadline for an existing key.
    pub fn deadline(&mut self, key: &[u8], deadline: u64) -> u64 {
        effect::deadline_payload(&mut self.scratch, key, deadline);
        self.append(kind::DEADLINE)
    }

    /// APPEND.
    pub fn append_to(&mut self, key: &[u8], data: &[u8]) -> u64 {
        effect::append_payload(&mut self.scratch, key, data);
        self.append(kind::APPEND)
    }

    /// SETRANGE.
    pub fn setrange(&mut self, key: &[u8], offset: u64, data: &[u8]) -> u64 {
        effect::setrange_payload(&mut self.scratch, key, offset, data);
        self.append(kind::SETRANGE)
    }

    /// Any other effect (FLUSH, TXN).
    pub fn effect(&mut self, e: &Effect) -> u64 {
        let (k, payload) = e.encode();
        self.appended += 1;
        self.log.append(k, &payload)
    }

    /// Hand this turn's records to the WAL thread.
    pub fn flush(&mut self) {
        self.log.flush();
    }

    /// Highest LSN known durable.
    pub fn durable(&self) -> u64 {
        self.log.durable()
    }

    /// Why the log cannot write, if it cannot.
    pub fn error(&self) -> Option<String> {
        self.log.error()
    }
}
