//! The bounded per-peer queue of outgoing one-way messages and its drop policy.

use std::collections::VecDeque;

/// A bounded FIFO that, when full, makes room by dropping its **oldest** item.
///
/// This is the policy for one-way messages waiting for a peer: gossip messages are idempotent and
/// a newer one supersedes an older one, so under pressure (a slow or unreachable peer) the best
/// thing to lose is the message that has waited longest. The caller learns about every drop (the
/// dropped item is returned) and counts it.
#[derive(Debug)]
pub struct DropOldestQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> DropOldestQueue<T> {
    /// An empty queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            items: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    /// Appends `item`; if the queue was full, removes and returns the oldest item.
    pub fn push(&mut self, item: T) -> Option<T> {
        let dropped = if self.items.len() >= self.capacity {
            self.items.pop_front()
        } else {
            None
        };
        self.items.push_back(item);
        dropped
    }

    /// Puts `item` back at the head (it is older than everything queued), unless the queue is
    /// full, in which case `item` itself is the oldest and is returned as dropped.
    pub fn push_front(&mut self, item: T) -> Option<T> {
        if self.items.len() >= self.capacity {
            return Some(item);
        }
        self.items.push_front(item);
        None
    }

    /// Removes and returns the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Removes every item, returning how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most items the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
