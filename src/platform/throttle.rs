//! Counts events per key over a sliding window: failed sign-ins per account and per address,
//! reset requests per email. Kept in process memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct SlidingWindow {
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Keys kept before stale ones are swept out.
const SWEEP_ABOVE: usize = 10_000;

impl SlidingWindow {
    pub fn new(window: Duration) -> Self {
        Self { window, events: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when `key` already has `max` events in the window.
    pub fn check(&self, key: &str, max: u32) -> Result<(), u64> {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(times) = events.get_mut(key) else {
            return Ok(());
        };
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            times.pop_front();
        }
        if times.len() < max as usize {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs() + 1)
    }

    pub fn record(&self, key: &str) {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if events.len() > SWEEP_ABOVE {
            let window = self.window;
            events.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let times = events.entry(key.to_owned()).or_default();
        times.push_back(now);
        // No key needs more history than the largest limit; keep memory bounded per key.
        if times.len() > 1000 {
            times.pop_front();
        }
    }

    pub fn clear(&self, key: &str) {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_max_events_and_clears() {
        let window = SlidingWindow::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(window.check("k", 3).is_ok());
            window.record("k");
        }
        let wait = window.check("k", 3).unwrap_err();
        assert!((1..=61).contains(&wait));
        assert!(window.check("other", 3).is_ok());
        window.clear("k");
        assert!(window.check("k", 3).is_ok());
    }

    #[test]
    fn events_leave_the_window() {
        let window = SlidingWindow::new(Duration::from_millis(20));
        window.record("k");
        assert!(window.check("k", 1).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(window.check("k", 1).is_ok());
    }
}
