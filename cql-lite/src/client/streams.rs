//! Stream-id bookkeeping for one connection.
//!
//! Protocol v4 gives every request a stream id in `0..=32767`; the server answers on the same id,
//! in any order. The table hands out free ids (lowest reused first, so ids stay small), keeps one
//! slot per outstanding request (the channel the answer goes to), and gives an id back only when
//! its answer has arrived or the connection is gone. An id whose caller gave up (timeout,
//! cancelled future) stays taken until the late answer comes: reusing it earlier would hand that
//! late answer to the wrong request.
//!
//! Generic over the slot so that it is tested without channels or sockets.

use std::collections::HashMap;

/// Highest stream id a v4 client may use (ids are `i16`; negative ids are the server's).
pub const MAX_STREAM_ID: i16 = i16::MAX;

/// Why no stream id was handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// All 32768 ids are taken.
    Exhausted,
    /// The connection is closed; the text says why.
    Closed(String),
}

/// Outstanding requests of one connection, by stream id.
#[derive(Debug)]
pub struct StreamTable<T> {
    /// Ids never handed out yet start here (`MAX_STREAM_ID + 1` once all have been used).
    next_unused: i32,
    /// Ids handed out and given back, reused before `next_unused`.
    free: Vec<i16>,
    slots: HashMap<i16, T>,
    /// Set once the connection is gone: no more allocations.
    closed: Option<String>,
}

impl<T> Default for StreamTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> StreamTable<T> {
    pub fn new() -> Self {
        StreamTable {
            next_unused: 0,
            free: Vec::new(),
            slots: HashMap::new(),
            closed: None,
        }
    }

    /// Takes a free id for a new request whose answer goes to `slot`.
    pub fn allocate(&mut self, slot: T) -> Result<i16, AllocError> {
        if let Some(reason) = &self.closed {
            return Err(AllocError::Closed(reason.clone()));
        }
        let id = if let Some(id) = self.free.pop() {
            id
        } else if self.next_unused <= i32::from(MAX_STREAM_ID) {
            let id = self.next_unused as i16;
            self.next_unused += 1;
            id
        } else {
            return Err(AllocError::Exhausted);
        };
        self.slots.insert(id, slot);
        Ok(id)
    }

    /// The answer for `stream` arrived: returns its slot and frees the id. `None` for an id that
    /// is not outstanding (a confused or malicious server); nothing changes then.
    pub fn complete(&mut self, stream: i16) -> Option<T> {
        let slot = self.slots.remove(&stream)?;
        self.free.push(stream);
        Some(slot)
    }

    /// The connection is gone: no id will be handed out again, and every outstanding slot is
    /// returned so that its waiter can be told.
    pub fn close(&mut self, reason: impl Into<String>) -> Vec<T> {
        if self.closed.is_none() {
            self.closed = Some(reason.into());
        }
        self.free.clear();
        self.slots.drain().map(|(_, slot)| slot).collect()
    }

    /// Why the connection closed, if it did.
    pub fn closed_reason(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Requests sent and not yet answered (including those whose caller gave up).
    pub fn outstanding(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_after_completion() {
        let mut t = StreamTable::new();
        assert_eq!(t.allocate("a"), Ok(0));
        assert_eq!(t.allocate("b"), Ok(1));
        assert_eq!(t.complete(0), Some("a"));
        assert_eq!(t.allocate("c"), Ok(0));
        assert_eq!(t.allocate("d"), Ok(2));
        assert_eq!(t.outstanding(), 3);
    }

    #[test]
    fn unknown_or_repeated_answers_change_nothing() {
        let mut t = StreamTable::new();
        let id = t.allocate(1).unwrap();
        assert_eq!(t.complete(id + 5), None);
        assert_eq!(t.complete(-1), None);
        assert_eq!(t.complete(id), Some(1));
        assert_eq!(t.complete(id), None);
        // The id is free exactly once.
        assert_eq!(t.allocate(2), Ok(id));
        assert_eq!(t.allocate(3), Ok(id + 1));
    }

    #[test]
    fn all_32768_ids_then_exhausted() {
        let mut t = StreamTable::new();
        for i in 0..=i32::from(MAX_STREAM_ID) {
            assert_eq!(t.allocate(()), Ok(i as i16));
        }
        assert_eq!(t.allocate(()), Err(AllocError::Exhausted));
        t.complete(1234);
        assert_eq!(t.allocate(()), Ok(1234));
    }

    #[test]
    fn close_drains_and_refuses() {
        let mut t = StreamTable::new();
        t.allocate("a").unwrap();
        t.allocate("b").unwrap();
        let mut drained = t.close("peer reset");
        drained.sort();
        assert_eq!(drained, vec!["a", "b"]);
        assert_eq!(
            t.allocate("c"),
            Err(AllocError::Closed("peer reset".into()))
        );
        assert_eq!(t.closed_reason(), Some("peer reset"));
        // The first reason is kept.
        t.close("later");
        assert_eq!(t.closed_reason(), Some("peer reset"));
    }
}
