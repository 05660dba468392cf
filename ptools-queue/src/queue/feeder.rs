//! The feeders: one thread per worker taking its best entries, pipelining short tasks,
//! and counting the outcomes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Shared, lock};
use crate::core::{Entry, Place};
use crate::error::Error;
use crate::task::{Completion, InFlight, Queued, Sent};
use ptools_workerset::WorkerStatus;

/// The most calls a feeder keeps on its worker at once.
const MAX_WINDOW: usize = 64;

/// How much work (by the measured time per task) a feeder commits to its worker ahead:
/// enough to keep a worker busy between replies when tasks are short, never so much that
/// a task waits on a busy worker while another one idles.
const AHEAD: Duration = Duration::from_millis(2);

/// How many calls a feeder may keep on its worker, from the mean time per task so far
/// (`None`: nothing measured yet, so one at a time).
fn window(mean: Option<Duration>) -> usize {
    match mean {
        None => 1,
        Some(m) if m.is_zero() => MAX_WINDOW,
        Some(m) => ((AHEAD.as_nanos() / m.as_nanos()) as usize).clamp(1, MAX_WINDOW),
    }
}

/// One worker's feeder: takes the best entries for `w`, runs them, hands the outcomes to
/// the callback thread; until the worker is gone or the queue is dropped.
///
/// Calls are pipelined: while tasks are short (by the mean time per task measured so
/// far), up to [`window`] calls wait on the worker, so it runs them back to back instead
/// of idling for a round trip between tasks. Long tasks go one at a time, so a task never
/// waits behind another on a busy worker while an idle one could take it.
pub(super) fn feeder(sh: Arc<Shared>, w: usize) {
    let mut flying: VecDeque<(Place, Box<dyn InFlight>)> = VecDeque::new();
    let mut mean: Option<Duration> = None;
    let mut last = Instant::now();
    let mut gone: Option<ptools_workerset::Error> = None;
    // Set when the queue is dropped or the worker retired: the calls in flight still end
    // (and are counted and called back) before the feeder does.
    let mut stop = false;
    loop {
        // Take what the window allows: blocking when nothing is in flight.
        if gone.is_none() && !stop {
            let want = window(mean).saturating_sub(flying.len());
            let taken = if want == 0 {
                Vec::new()
            } else {
                match take(&sh, w, want, flying.is_empty()) {
                    Take::Entries(v) => v,
                    Take::Stop => {
                        stop = true;
                        Vec::new()
                    }
                    Take::Dead(err) => {
                        sh.retire(w, err);
                        return;
                    }
                }
            };
            if flying.is_empty() && !taken.is_empty() {
                last = Instant::now();
            }
            let mut failed = Vec::new();
            for e in taken {
                let (place, Queued { target, job }) = e.split();
                if gone.is_some() {
                    requeue(&sh, place, Queued { target, job });
                    continue;
                }
                match job.send(&sh.cluster, w) {
                    Sent::InFlight(f) => flying.push_back((place, f)),
                    Sent::Failed(c) => failed.push((place, c)),
                    Sent::Gone(job, err) => {
                        requeue(&sh, place, Queued { target, job });
                        gone = Some(err);
                    }
                }
            }
            complete(&sh, failed);
        }
        let Some((place, f)) = flying.pop_front() else {
            if let Some(err) = gone {
                sh.retire(w, err);
                return;
            }
            if stop {
                return;
            }
            continue;
        };
        // Wait for the oldest call, then take every later one already answered.
        let mut done = vec![(place, f.finish())];
        while flying.front().is_some_and(|(_, f)| f.is_ready()) {
            let (place, f) = flying.pop_front().expect("front exists");
            done.push((place, f.finish()));
        }
        let now = Instant::now();
        let per = (now - last) / done.len() as u32;
        last = now;
        mean = Some(match mean {
            None => per,
            Some(m) => (m * 3 + per) / 4,
        });
        if gone.is_none() {
            gone = done.iter().find_map(|(_, c)| c.died.clone());
            if let Some(err) = &gone {
                // Retired before the outcome is counted, so whoever sees the task end
                // (a callback, `wait_idle`) already sees the worker gone.
                sh.retire(w, err.clone());
            }
        }
        complete(&sh, done);
    }
}

enum Take {
    Entries(Vec<Entry<Queued>>),
    /// The queue was dropped or the worker retired.
    Stop,
    /// The worker died while its feeder was idle.
    Dead(ptools_workerset::Error),
}

/// Takes up to `want` entries for `w`, counting them running; waits for one if `block`.
fn take(sh: &Shared, w: usize, want: usize, block: bool) -> Take {
    let mut st = lock(&sh.st);
    loop {
        if st.shutdown || !st.remotes.contains_key(&w) {
            return Take::Stop;
        }
        let mut v = Vec::new();
        if !st.paused {
            while v.len() < want {
                let Some(e) = st.core.pop_for(w) else { break };
                v.push(e);
            }
        }
        st.counts.running += v.len();
        if !v.is_empty() || !block {
            return Take::Entries(v);
        }
        if w != 1 {
            // The cluster's record; its exit hook (set in `TaskQueue::new`) wakes `work`
            // under `st` once the record says gone, so a death is never missed between
            // this look and the wait.
            match sh.cluster.worker_status(w) {
                WorkerStatus::Alive => {}
                WorkerStatus::Gone(e) => return Take::Dead(e),
                _ => return Take::Dead(ptools_workerset::Error::UnknownWorker(w)),
            }
        }
        st.idle_feeders += 1;
        sh.work.wait(&mut st);
        st.idle_feeders -= 1;
    }
}

/// Puts back a taken entry that could not be sent.
fn requeue(sh: &Shared, place: Place, job: Queued) {
    let mut st = lock(&sh.st);
    st.counts.running -= 1;
    if st.shutdown {
        // The queue was dropped (and drained) meanwhile: nobody would take it any more.
        drop(st);
        let c = job.job.fail(Error::Shutdown);
        let mut st = lock(&sh.st);
        st.counts.dequeued += 1;
        st.core.finish(place.task);
        st.counts.callbacks_pending += usize::from(c.has_callback);
        sh.notify_if_idle(&st);
        drop(st);
        sh.deliver(vec![c]);
        return;
    }
    st.core.requeue(place, job);
}

/// Counts the outcomes of taken entries and hands them to the callback thread.
fn complete(sh: &Shared, done: Vec<(Place, Completion)>) {
    if done.is_empty() {
        return;
    }
    let mut out = Vec::with_capacity(done.len());
    {
        let mut st = lock(&sh.st);
        for (place, c) in done {
            st.counts.running -= 1;
            if c.ok {
                st.counts.done += 1;
            } else {
                st.counts.failed += 1;
            }
            st.core.finish(place.task);
            st.counts.callbacks_pending += usize::from(c.has_callback);
            out.push(c);
        }
        sh.notify_if_idle(&st);
    }
    sh.deliver(out);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MAX_WINDOW, window};

    #[test]
    fn the_window_follows_the_measured_task_time() {
        assert_eq!(window(None), 1, "nothing measured: one at a time");
        assert_eq!(window(Some(Duration::ZERO)), MAX_WINDOW);
        assert_eq!(window(Some(Duration::from_micros(10))), MAX_WINDOW);
        assert_eq!(window(Some(Duration::from_micros(500))), 4);
        assert_eq!(window(Some(Duration::from_millis(2))), 1);
        assert_eq!(window(Some(Duration::from_secs(60))), 1);
    }
}
