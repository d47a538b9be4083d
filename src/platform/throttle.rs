//! Counts events per key over a sliding window: failed sign-ins per account and per address,
//! reset requests per email. Kept in process memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct SlidingWindow {
    window: Duration,
    events: Mutex<Events>,
}

struct Events {
    by_key: HashMap<String, VecDeque<Instant>>,
    last_sweep: Instant,
}

/// Keys kept before stale ones are swept out, at most once per [`SWEEP_EVERY`].
const SWEEP_ABOVE: usize = 10_000;
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl SlidingWindow {
    pub fn new(window: Duration) -> Self {
        Self { window, events: Mutex::new(Events { by_key: HashMap::new(), last_sweep: Instant::now() }) }
    }

    /// Records an event for `key` unless it already has `max` in the window, in which case
    /// it answers `Err(seconds to wait)`. Checking and recording are one step, so concurrent
    /// attempts cannot slip past the limit together.
    pub fn take(&self, key: &str, max: u32) -> Result<(), u64> {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if events.by_key.len() > SWEEP_ABOVE && now.duration_since(events.last_sweep) >= SWEEP_EVERY {
            let window = self.window;
            events.by_key.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
            events.last_sweep = now;
        }
        let times = events.by_key.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            times.pop_front();
        }
        if times.len() >= max as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)).as_secs() + 1);
        }
        times.push_back(now);
        Ok(())
    }

    /// Takes back the latest event of `key`: the attempt it stood for did not count.
    pub fn give_back(&self, key: &str) {
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(times) = events.by_key.get_mut(key) {
            times.pop_back();
        }
    }

    pub fn clear(&self, key: &str) {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).by_key.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_max_events_and_clears() {
        let window = SlidingWindow::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(window.take("k", 3).is_ok());
        }
        let wait = window.take("k", 3).unwrap_err();
        assert!((1..=61).contains(&wait));
        assert!(window.take("other", 3).is_ok());
        window.give_back("k");
        assert!(window.take("k", 3).is_ok());
        assert!(window.take("k", 3).is_err());
        window.clear("k");
        assert!(window.take("k", 3).is_ok());
    }

    #[test]
    fn events_leave_the_window() {
        let window = SlidingWindow::new(Duration::from_millis(20));
        window.take("k", 1).unwrap();
        assert!(window.take("k", 1).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(window.take("k", 1).is_ok());
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_limit() {
        let window = std::sync::Arc::new(SlidingWindow::new(Duration::from_secs(60)));
        let admitted: usize = (0..8)
            .map(|_| {
                let window = window.clone();
                std::thread::spawn(move || (0..50).filter(|_| window.take("k", 5).is_ok()).count())
            })
            .map(|thread| thread.join().unwrap())
            .sum();
        assert_eq!(admitted, 5);
    }
}
