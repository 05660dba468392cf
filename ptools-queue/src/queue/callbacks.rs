//! The callback thread: runs completions in order, catches and reports panics.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Weak, mpsc};

use super::{CallbackPanic, ON_CALLBACK_THREAD, Shared, is_idle, lock};
use crate::task::Completion;

pub(super) fn callback_loop(rx: mpsc::Receiver<Vec<Completion>>, sh: Weak<Shared>) {
    ON_CALLBACK_THREAD.with(|c| c.set(true));
    for batch in rx {
        let n = batch.len();
        for c in batch {
            run_callback(c, &sh);
        }
        let Some(sh) = sh.upgrade() else {
            continue;
        };
        let mut st = lock(&sh.st);
        st.counts.callbacks_pending -= n;
        if is_idle(&st) {
            sh.idle.notify_all();
        }
    }
}

/// The message of a caught panic (`"<non-string panic payload>"` when it was not a
/// string).
pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".into())
}

/// Runs one callback; a panic is counted and reported to the hook.
fn run_callback(c: Completion, sh: &Weak<Shared>) {
    let (task, worker) = (c.task, c.worker);
    let r = catch_unwind(AssertUnwindSafe(c.run));
    if let Err(p) = r {
        let Some(sh) = sh.upgrade() else {
            return;
        };
        {
            let message = panic_message(&*p);
            lock(&sh.st).counts.callback_panics += 1;
            let info = CallbackPanic {
                task,
                worker,
                message,
            };
            let hook = sh.hook.read().clone();
            // A hook that panics too must not end the callback thread.
            let _ = catch_unwind(AssertUnwindSafe(|| match hook {
                Some(h) => h(&info),
                None => eprintln!(
                    "ptools-queue: callback of {} (worker {:?}) panicked: {}",
                    info.task, info.worker, info.message
                ),
            }));
        }
    }
}
