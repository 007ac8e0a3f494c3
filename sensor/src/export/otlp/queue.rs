//! The bounded hand-over from the capture thread to the export task: `push` never blocks and never
//! grows the queue past its capacity (a full queue drops the new span and counts it).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use tokio::sync::Notify;

pub(crate) struct BoundedQueue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    /// Wakes the export task when a full batch is waiting.
    pub(crate) ready: Notify,
    batch: usize,
    dropped: AtomicU64,
}

impl<T> BoundedQueue<T> {
    pub(crate) fn new(capacity: usize, batch: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            batch: batch.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds an item unless the queue is full (then it is counted as dropped).
    pub(crate) fn push(&self, item: T) {
        let Ok(mut items) = self.items.lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if items.len() >= self.capacity {
            drop(items);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        items.push_back(item);
        let full_batch = items.len() % self.batch == 0;
        drop(items);
        if full_batch {
            self.ready.notify_one();
        }
    }

    /// Takes up to `max` items, oldest first.
    pub(crate) fn take(&self, max: usize) -> Vec<T> {
        let Ok(mut items) = self.items.lock() else {
            return Vec::new();
        };
        let n = items.len().min(max);
        items.drain(..n).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.lock().map_or(0, |items| items.len())
    }

    /// Items refused because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_and_counts() {
        let q = BoundedQueue::new(3, 2);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.take(2), vec![0, 1]);
        q.push(9);
        assert_eq!(q.take(10), vec![2, 9]);
        assert_eq!(q.len(), 0);
    }
}
