//! A client-side rate limit for writes to the API server: a token bucket that hands out send
//! times instead of blocking, so concurrent writes can each wait for their own slot.
//!
//! kube has no client-side rate limiter (client-go's `QPS`/`Burst`); the status writer uses
//! this one. It runs on tokio's clock, so tests with paused time see exact slots.

use std::time::Duration;

use tokio::time::Instant;

/// `qps` tokens a second on average, up to `burst` at once.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Time one token takes to come back.
    per_token: Duration,
    burst: u32,
    /// Tokens at `at`; negative when reservations ran ahead (each waits its turn).
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. `qps` and `burst` are at least 1 (0 is taken as 1).
    pub(crate) fn new(qps: u32, burst: u32) -> Self {
        let burst = burst.max(1);
        Self {
            per_token: Duration::from_secs(1) / qps.max(1),
            burst,
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// Takes a token; returns when the write it is for may go out (now, or later when the
    /// bucket is empty).
    pub(crate) fn reserve(&mut self) -> Instant {
        let now = Instant::now();
        let per_token = self.per_token.as_secs_f64();
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() / per_token;
        self.tokens = (self.tokens + refilled).min(f64::from(self.burst));
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-self.tokens * per_token)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_one_slot_per_token() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, 10);
        let slots: Vec<Duration> = (0..30).map(|_| bucket.reserve() - start).collect();
        assert!(slots[..10].iter().all(|s| s.is_zero()), "{slots:?}");
        for (i, slot) in slots[10..].iter().enumerate() {
            let want = Duration::from_millis(10 * (i as u64 + 1));
            let off = slot.abs_diff(want);
            assert!(off < Duration::from_micros(10), "slot {i}: {slot:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_while_idle_up_to_the_burst() {
        let mut bucket = TokenBucket::new(10, 5);
        for _ in 0..5 {
            bucket.reserve();
        }
        // Empty: the next token comes 100 ms later.
        let next = bucket.reserve();
        assert!(next > Instant::now() + Duration::from_millis(99));
        tokio::time::advance(Duration::from_secs(60)).await;
        // A minute idle refills 5 tokens, not 600.
        let now = Instant::now();
        let slots: Vec<Instant> = (0..6).map(|_| bucket.reserve()).collect();
        assert!(slots[..5].iter().all(|s| *s == now));
        assert!(slots[5] > now);
    }
}
