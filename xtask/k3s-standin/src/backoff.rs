//! Retry pauses that grow, as k3s's agents and joining servers wait for a
//! server that is not up yet: 0.5 s, doubling, up to 5 s.

use std::time::Duration;

/// The first pause.
pub const INITIAL: Duration = Duration::from_millis(500);
/// The longest pause.
pub const CAP: Duration = Duration::from_secs(5);

/// Pauses between attempts: [`INITIAL`], doubling, at most [`CAP`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: INITIAL }
    }
}

impl Backoff {
    /// A fresh back-off.
    pub fn new() -> Self {
        Backoff::default()
    }

    /// The pause before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(CAP);
        pause
    }

    /// Sleeps for the next pause.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap() {
        let mut b = Backoff::new();
        let pauses: Vec<u128> = (0..7).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }
}
