//! The bounded FIFO of requests waiting for their answers, shared by the parsers: a new request
//! beyond the bound pushes the oldest out (the caller counts it in `pending_overflow`, and reports it
//! as `no_response` or drops it, by its protocol's rule).

use std::collections::VecDeque;

/// Appends `item`; when `queue` already holds `max` items, first takes out the oldest and returns it.
pub fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) -> Option<T> {
    let oldest = if queue.len() >= max {
        queue.pop_front()
    } else {
        None
    };
    queue.push_back(item);
    oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_out_at_the_bound() {
        let mut queue = VecDeque::new();
        assert_eq!(push_bounded(&mut queue, 1, 2), None);
        assert_eq!(push_bounded(&mut queue, 2, 2), None);
        assert_eq!(push_bounded(&mut queue, 3, 2), Some(1));
        assert_eq!(queue, [2, 3]);
    }
}
