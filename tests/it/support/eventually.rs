//! `eventually`: the one way these tests wait for something the worker or the emulators do
//! asynchronously.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a probe is asked again.
const PAUSE: Duration = Duration::from_millis(100);

/// A probe's answer: done, or not yet. `true`, `Ok(value)` are done; `false`, `Err(what was
/// seen)` are not, and `Err` carries what the test's failure message should show.
pub trait Answer {
    fn is_done(&self) -> bool;
}

impl Answer for bool {
    fn is_done(&self) -> bool {
        *self
    }
}

impl<T, E> Answer for Result<T, E> {
    fn is_done(&self) -> bool {
        self.is_ok()
    }
}

/// Asks `probe` until its answer is done or `within` has passed, and returns the last answer:
/// the done one, or the last not-done one when time ran out. The probe is asked at least once,
/// and once more at the deadline, so a slow probe never loses its last chance.
pub async fn eventually<A, F, Fut>(within: Duration, mut probe: F) -> A
where
    A: Answer,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    let deadline = Instant::now() + within;
    loop {
        let answer = probe().await;
        let now = Instant::now();
        if answer.is_done() || now >= deadline {
            return answer;
        }
        tokio::time::sleep(PAUSE.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn returns_the_first_done_answer_without_waiting_longer() {
        let asked = Cell::new(0);
        let started = Instant::now();
        let answer = eventually(Duration::from_secs(10), || async {
            asked.set(asked.get() + 1);
            if asked.get() == 3 {
                Ok(asked.get())
            } else {
                Err(asked.get())
            }
        })
        .await;
        assert_eq!(answer, Ok(3));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_with_the_last_answer_seen() {
        let asked = Cell::new(0);
        let started = Instant::now();
        let answer: Result<(), u32> = eventually(Duration::from_millis(350), || async {
            asked.set(asked.get() + 1);
            Err(asked.get())
        })
        .await;
        let took = started.elapsed();
        assert_eq!(answer, Err(asked.get()), "the last answer");
        assert!(asked.get() >= 3, "asked again and again: {}", asked.get());
        assert!(took >= Duration::from_millis(350), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn asks_once_even_with_no_time_left() {
        let asked = Cell::new(0);
        let answer = eventually(Duration::ZERO, || async {
            asked.set(asked.get() + 1);
            false
        })
        .await;
        assert!(!answer);
        assert_eq!(asked.get(), 1);
    }
}
