//! `pmap`: items in adaptive batches over a [`WorkerSet`].

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::func::FnRef;
use crate::remote_ref::Slot;
use crate::workerset::{Job, WorkerSet};

/// Work per batch the sizing aims at: long enough that the per-batch cost (a round trip,
/// tens of microseconds) is small, short enough to balance the end of the run.
const TARGET: Duration = Duration::from_millis(2);
/// A batch is at most this many times larger than the previous one.
const GROWTH: usize = 16;

/// Reports finished items (a progress bar, or nothing).
pub(crate) trait Progress {
    fn advance(&mut self, items: usize);
    fn finish(&mut self) {}
}

impl Progress for () {
    fn advance(&mut self, _: usize) {}
}

#[cfg(feature = "progress")]
impl Progress for indicatif::ProgressBar {
    fn advance(&mut self, items: usize) {
        self.inc(items as u64);
    }
    fn finish(&mut self) {
        indicatif::ProgressBar::finish(self);
    }
}

pub(crate) fn run<A, R>(
    set: &WorkerSet,
    f: fn(A) -> R,
    items: &[A],
    progress: &mut dyn Progress,
) -> Result<Vec<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let n = items.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let fref = FnRef::batch(f)?;
    let width = set.width();
    let (tx, rx) = mpsc::channel::<usize>();
    // Per batch: its range, slot and start time.
    let mut batches: Vec<(usize, usize, std::sync::Arc<Slot>, Instant)> = Vec::new();
    let mut results: Vec<Option<Vec<R>>> = Vec::new();
    let mut next = 0;
    let mut in_flight = 0;
    let mut size = 1usize;
    let mut per_item: Option<f64> = None;
    let mut done = 0;
    while done < batches.len() || next < n {
        while next < n && in_flight < width {
            let left = n - next;
            if let Some(t) = per_item {
                let want = (TARGET.as_secs_f64() / t.max(1e-9)) as usize;
                size = want.clamp(1, size.saturating_mul(GROWTH));
            }
            // Keep enough batches for every worker near the end.
            let fair = left.div_ceil(width);
            let len = size.min(fair).max(1);
            let arg = crate::codec::encode(&items[next..next + len])
                .map_err(|e| Error::Encode(format!("argument: {e}")))?;
            let slot = Slot::new(0, None);
            let index = batches.len();
            let tx = tx.clone();
            slot.add_hook(Box::new(move || {
                let _ = tx.send(index);
            }));
            batches.push((next, len, slot.clone(), Instant::now()));
            results.push(None);
            set.submit(Job { f: fref, arg, slot })?;
            next += len;
            in_flight += 1;
        }
        let Ok(index) = rx.recv() else { break };
        in_flight -= 1;
        done += 1;
        let (_, len, slot, t0) = &batches[index];
        let took = t0.elapsed().as_secs_f64() / *len as f64;
        per_item = Some(match per_item {
            None => took,
            Some(p) => p.min(took * 4.0).max(took / 4.0) * 0.5 + took * 0.5,
        });
        let bytes = slot.take_done()?;
        let v: Vec<R> =
            crate::codec::decode(&bytes).map_err(|e| Error::Decode(format!("result: {e}")))?;
        if v.len() != *len {
            return Err(Error::Decode(format!(
                "batch of {len} gave {} results",
                v.len()
            )));
        }
        results[index] = Some(v);
        progress.advance(*len);
    }
    progress.finish();
    let mut out = Vec::with_capacity(n);
    for r in results {
        out.extend(r.unwrap_or_default());
    }
    Ok(out)
}
