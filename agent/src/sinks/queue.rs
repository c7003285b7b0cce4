//! A sink's bounded queue: publishing never blocks and never fails; when the queue is full the oldest
//! events are dropped and counted, so a dead collector costs a fixed amount of memory and the count of what
//! it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One serialized event (a JSON object, no trailing newline) and what a receiver needs to route it.
#[derive(Debug, Clone)]
pub struct Item {
    /// The event as one line of JSON.
    pub json: Arc<str>,
    /// `event.dataset`, for syslog's MSGID and journald's fields.
    pub dataset: Arc<str>,
    /// `container.id`, when the event is about a container.
    pub container_id: Option<Arc<str>>,
    /// `container.name`.
    pub container_name: Option<Arc<str>>,
    /// Syslog severity (RFC 5424 numbering: 3 error, 4 warning, 6 info).
    pub severity: u8,
    /// `event.id`.
    pub event_id: Arc<str>,
    /// `event.sequence`.
    pub sequence: u64,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    dropped: u64,
    closed: bool,
}

/// A bounded, drop-oldest queue shared by the publisher and one sink worker.
#[derive(Debug)]
pub struct Queue {
    capacity: usize,
    state: Mutex<State>,
    notify: Notify,
}

impl Queue {
    /// A queue holding at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Arc<Queue> {
        Arc::new(Queue { capacity: capacity.max(1), state: Mutex::new(State::default()), notify: Notify::new() })
    }

    /// Appends events, dropping the oldest ones beyond capacity. Never blocks on the sink.
    pub fn push_all(&self, items: impl IntoIterator<Item = Item>) {
        {
            let mut s = self.lock();
            for it in items {
                if s.items.len() == self.capacity {
                    s.items.pop_front();
                    s.dropped += 1;
                }
                s.items.push_back(it);
            }
        }
        self.notify.notify_one();
    }

    /// Takes up to `max` events from the front (at least one if any, and no more than `max_bytes` of JSON
    /// unless the first alone is larger).
    pub fn take(&self, max: usize, max_bytes: usize) -> Vec<Item> {
        let mut s = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(front) = s.items.front() {
            if out.len() >= max || (!out.is_empty() && bytes + front.json.len() > max_bytes) {
                break;
            }
            bytes += front.json.len();
            if let Some(it) = s.items.pop_front() {
                out.push(it);
            }
        }
        out
    }

    /// Waits until events may be waiting or the queue was closed.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Wakes the worker without adding anything (used for shutdown and reopen requests).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Marks the queue closed: the worker drains it and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Events waiting.
    pub fn depth(&self) -> usize {
        self.lock().items.len()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every mutation is one
        // VecDeque call), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u32) -> Item {
        Item {
            json: Arc::from(format!("{{\"n\":{n}}}")),
            dataset: Arc::from("ovlaudit.test"),
            container_id: None,
            container_name: None,
            severity: 6,
            event_id: Arc::from(n.to_string()),
            sequence: u64::from(n),
        }
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let q = Queue::new(3);
        q.push_all((1..=5).map(item));
        assert_eq!(q.depth(), 3);
        assert_eq!(q.dropped(), 2);
        let got: Vec<String> = q.take(10, usize::MAX).iter().map(|i| i.event_id.to_string()).collect();
        assert_eq!(got, ["3", "4", "5"]);
    }

    #[test]
    fn take_respects_count_and_bytes_but_always_makes_progress() {
        let q = Queue::new(10);
        q.push_all((1..=5).map(item));
        assert_eq!(q.take(2, usize::MAX).len(), 2);
        // Each event is 7 bytes: a limit of 10 bytes admits one; a limit of 1 still admits one.
        assert_eq!(q.take(10, 10).len(), 1);
        assert_eq!(q.take(10, 1).len(), 1);
        assert_eq!(q.depth(), 1);
    }
}
