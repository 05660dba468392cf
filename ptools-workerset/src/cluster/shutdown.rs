//! Stopping workers: the shutdown request, the grace period, `SIGKILL`, and dropping the
//! cluster.

use std::sync::Arc;
use std::time::Duration;

use super::link::Remote;
use super::{Inner, lock};
use crate::error::{Error, Termination};
use crate::wire;

impl Remote {
    pub(super) fn send_ctl(&self, kind: u8, token: u64) {
        let g = lock(&self.ctl);
        let mut f = Vec::with_capacity(16);
        wire::begin(&mut f, kind);
        f.extend_from_slice(&token.to_le_bytes());
        wire::finish(&mut f);
        let _ = g.0.send_all(&f);
    }

    pub(super) fn wait_ended(&self, timeout: Duration) -> Option<Termination> {
        let mut g = lock(&self.ended);
        self.ended_cv
            .wait_while_for(&mut g, |e| e.is_none(), timeout);
        *g
    }

    /// After a shutdown request: waits `grace`, then `SIGKILL`; returns once reaped.
    pub(super) fn stop(&self, grace: Duration) {
        if self.wait_ended(grace).is_none() {
            // Once: the pidfd watcher sees the death and wakes the reader, which reaps.
            self.proc.kill();
            while self.wait_ended(Duration::from_secs(5)).is_none() {}
        }
    }
}

/// Stops workers in parallel: shutdown to all first, then the waits.
pub(super) fn stop_all(inner: &Inner, list: Vec<Arc<Remote>>) {
    for w in &list {
        w.send_ctl(wire::SHUTDOWN, 0);
    }
    for w in &list {
        w.stop(inner.opts.grace);
        inner.died(
            w.id,
            Error::WorkerDied {
                id: w.id,
                pid: w.proc.pid(),
                termination: w.wait_ended(Duration::ZERO).unwrap_or(Termination::Unknown),
            },
        );
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let list: Vec<_> = std::mem::take(&mut *self.workers.write())
            .into_values()
            .collect();
        stop_all(self, list);
    }
}
