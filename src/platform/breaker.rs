//! A circuit breaker per outbound destination: after `threshold` failures in a row the
//! destination is left alone for `cooldown`, so that an outage costs one fast refusal per
//! attempt instead of a timeout each. After the cooldown one attempt goes through; a
//! success closes the circuit, a failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self { threshold: threshold.max(1), cooldown, state: Mutex::new(State::default()) }
    }

    /// `Err(time left)` while the circuit is open.
    pub fn check(&self) -> Result<(), Duration> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.open_until {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    pub fn record_success(&self) {
        *self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = State::default();
    }

    pub fn record_failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            state.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            breaker.record_failure();
            assert!(breaker.check().is_ok());
        }
        breaker.record_failure();
        assert!(breaker.check().is_err(), "open after 3 failures in a row");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.check().is_ok(), "one attempt after the cooldown");
        breaker.record_failure();
        assert!(breaker.check().is_err(), "that attempt failed: open again");
        std::thread::sleep(Duration::from_millis(40));
        breaker.record_success();
        breaker.record_failure();
        assert!(breaker.check().is_ok(), "a success starts the count again");
    }
}
