//! [`Meter`]: the limits of one run (`--max-steps`, `--max-memory`,
//! `--timeout`) and its cancel flag (an embedder's Ctrl-C), counted by the
//! interpreter and by every back end that runs a loop for it, so that a
//! limit means the same on every tier. The cancel flag is read where the
//! deadline is.
//!
//! A *step* is one loop iteration (one run of a loop body), whichever tier
//! runs it; a run fails once more than `max_steps` iterations have run. The
//! deadline is checked every 1024 iterations in the interpreter, every
//! [`Meter::CHUNK`] iterations in native code and between executions on XLA.

use crate::error::ExecError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The limits of one run and what has been spent against them.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    max_steps: Option<u64>,
    max_memory: Option<usize>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// Set (by another thread or a signal handler) to stop the run.
    cancel: Option<Arc<AtomicBool>>,
    steps: u64,
    /// Bytes the interpreter holds in the running function's registers when
    /// it offers a region to a back end (kept up to date only under
    /// `--max-memory`).
    pub held: usize,
}

impl Meter {
    /// Iterations native code runs between two looks at the clock.
    pub const CHUNK: u64 = 1 << 16;

    /// A meter with these limits (`None`: no limit); the clock starts at [`Meter::start`].
    pub fn new(max_steps: Option<u64>, max_memory: Option<usize>, timeout: Option<Duration>) -> Meter {
        Meter { max_steps, max_memory, timeout, deadline: None, cancel: None, steps: 0, held: 0 }
    }

    /// The same meter, stopping the run with [`ExecError::Interrupted`] once
    /// `cancel` is set.
    pub fn with_cancel(mut self, cancel: Option<Arc<AtomicBool>>) -> Meter {
        self.cancel = cancel;
        self
    }

    /// The cancel flag, for back ends that look at the clock themselves.
    pub fn cancel_flag(&self) -> Option<&Arc<AtomicBool>> {
        self.cancel.as_ref()
    }

    /// `true` when the run must look at the clock or the cancel flag now and
    /// then (a deadline or a cancel flag is set).
    pub fn watched(&self) -> bool {
        self.timeout.is_some() || self.cancel.is_some()
    }

    /// Starts the run: no step spent, the deadline `timeout` from now.
    pub fn start(&mut self) {
        self.steps = 0;
        self.held = 0;
        self.deadline = self.timeout.map(|t| Instant::now() + t);
    }

    /// `true` when loops must count their iterations (a step limit, a
    /// deadline or a cancel flag is set).
    pub fn counts(&self) -> bool {
        self.max_steps.is_some() || self.watched()
    }

    /// The step limit.
    pub fn max_steps(&self) -> Option<u64> {
        self.max_steps
    }

    /// The memory limit in bytes.
    pub fn max_memory(&self) -> Option<usize> {
        self.max_memory
    }

    /// The deadline, once started.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Loop iterations run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Iterations that may still run before the step limit fails the run
    /// (`u64::MAX` without one).
    pub fn steps_left(&self) -> u64 {
        self.max_steps.map_or(u64::MAX, |m| m.saturating_sub(self.steps))
    }

    /// Books `n` iterations; fails once more than the limit have run.
    #[inline]
    pub fn charge(&mut self, n: u64) -> Result<(), ExecError> {
        self.steps = self.steps.saturating_add(n);
        match self.max_steps {
            Some(max) if self.steps > max => Err(self.step_error()),
            _ => Ok(()),
        }
    }

    /// A back end spent every step left and a loop wanted one more: books
    /// them and returns the step limit's error.
    #[cold]
    pub fn overrun(&mut self) -> ExecError {
        self.steps = self.max_steps.map_or(u64::MAX, |m| m.saturating_add(1));
        self.step_error()
    }

    /// The step limit's error.
    #[cold]
    pub fn step_error(&self) -> ExecError {
        ExecError::StepLimit { max: self.max_steps.unwrap_or(u64::MAX) }
    }

    /// `true` once the deadline has passed or the run is cancelled.
    pub fn expired(&self) -> bool {
        self.cancelled() || self.deadline.is_some_and(|d| Instant::now() > d)
    }

    /// `true` once the cancel flag is set.
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Fails once the deadline has passed or the run is cancelled.
    pub fn check_deadline(&self) -> Result<(), ExecError> {
        if self.expired() {
            Err(self.timeout_error())
        } else {
            Ok(())
        }
    }

    /// The error of an expired meter: [`ExecError::Interrupted`] when the
    /// run was cancelled, else the deadline's.
    #[cold]
    pub fn timeout_error(&self) -> ExecError {
        if self.cancelled() {
            return ExecError::Interrupted;
        }
        ExecError::TimeLimit { timeout: self.timeout.unwrap_or_default() }
    }

    /// Fails when a new tensor of `bytes` (`None`: more than `usize::MAX`)
    /// beside `held` bytes would pass `--max-memory`, before it is allocated.
    pub fn reserve(&self, op: &str, held: usize, bytes: Option<usize>) -> Result<(), ExecError> {
        let Some(max) = self.max_memory else { return Ok(()) };
        match bytes.and_then(|b| b.checked_add(held)) {
            Some(total) if total <= max => Ok(()),
            _ => Err(ExecError::MemoryLimit { op: op.to_string(), bytes, held, max }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_fail_one_past_the_limit() {
        let mut m = Meter::new(Some(10), None, None);
        m.start();
        assert!(m.charge(10).is_ok());
        assert_eq!(m.steps_left(), 0);
        let e = m.charge(1).unwrap_err();
        assert_eq!(e, ExecError::StepLimit { max: 10 });
        assert!(e.is_limit());
        let e = e.to_string();
        assert_eq!(e, "step limit exceeded: more than 10 loop iterations (--max-steps)");
        assert_eq!(Meter::default().steps_left(), u64::MAX);
        let mut m = Meter::new(Some(7), None, None);
        m.start();
        assert!(m.overrun().to_string().contains("more than 7 loop iterations"));
        assert_eq!((m.steps(), m.steps_left()), (8, 0));
    }

    #[test]
    fn memory_and_deadline() {
        let mut m = Meter::new(None, Some(100), Some(Duration::ZERO));
        m.start();
        assert!(m.reserve("zeros", 50, Some(50)).is_ok());
        let e = m.reserve("broadcast", 51, Some(50)).unwrap_err();
        assert_eq!(e, ExecError::MemoryLimit { op: "broadcast".into(), bytes: Some(50), held: 51, max: 100 });
        assert_eq!(
            e.to_string(),
            "memory limit exceeded: broadcast needs 50 bytes with 51 bytes held, the limit is 100 (--max-memory)"
        );
        let e = m.reserve("zeros", 0, None).unwrap_err();
        assert!(e.is_limit() && e.to_string().contains("needs more than usize::MAX bytes"), "{e}");
        std::thread::sleep(Duration::from_millis(2));
        let e = m.check_deadline().unwrap_err();
        assert!(matches!(e, ExecError::TimeLimit { .. }) && e.is_limit(), "{e:?}");
        assert_eq!(e.to_string(), "time limit exceeded: the run took more than 0ns (--timeout)");
    }
}
