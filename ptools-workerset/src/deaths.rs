//! Deaths seen by the process, not by its socket.
//!
//! A worker that forked a helper (as C libraries do) leaves its sockets open in that helper,
//! so its death may never show on the link as an end of stream. One thread per master
//! watches every worker's pidfd with `poll(2)`; when one turns readable (the process has
//! ended), its hook runs: the cluster shuts its side of the link down, which wakes whoever
//! reads it, and the usual path then reaps the process and fails what was pending.
//!
//! The thread starts with the first worker and sleeps in `poll` when nothing happens, so an
//! idle cluster uses no CPU. A watch lasts until the process ends; every worker ends (it is
//! reaped only after it has), so the list never keeps an entry for good.

use std::os::fd::AsFd;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::sys::{self, Process};
use crate::wire::{Link, UnixLink};

type Hook = Box<dyn FnOnce() + Send>;

struct Watcher {
    list: Mutex<Vec<(Arc<Process>, Hook)>>,
    /// Written to when the list changes, so the thread polls the new set.
    wake_tx: UnixLink,
    wake_rx: UnixLink,
}

fn watcher() -> std::io::Result<&'static Watcher> {
    static W: OnceLock<std::io::Result<&'static Watcher>> = OnceLock::new();
    W.get_or_init(|| {
        let (a, b) = sys::socketpair()?;
        let w: &'static Watcher = Box::leak(Box::new(Watcher {
            list: Mutex::new(Vec::new()),
            wake_tx: UnixLink(a),
            wake_rx: UnixLink(b),
        }));
        std::thread::Builder::new()
            .name("ptools-deaths".into())
            .spawn(move || w.run())?;
        Ok(w)
    })
    .as_ref()
    .map(|w| *w)
    .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
}

/// Runs `on_death` once `proc` has ended (on the watcher thread; keep it short).
///
/// # Errors
///
/// The watcher thread could not be started.
pub(crate) fn watch(proc: Arc<Process>, on_death: Hook) -> std::io::Result<()> {
    let w = watcher()?;
    w.list.lock().push((proc, on_death));
    w.wake_tx.send_all(&[1])?;
    Ok(())
}

impl Watcher {
    fn run(&self) {
        let mut drain = [0u8; 64];
        loop {
            // References of our own: each pidfd stays open while it is polled, without
            // holding the lock during the wait.
            let procs: Vec<Arc<Process>> = self
                .list
                .lock()
                .iter()
                .map(|(p, _)| Arc::clone(p))
                .collect();
            let mut polled: Vec<&Arc<Process>> = Vec::with_capacity(procs.len());
            let mut fds = Vec::with_capacity(procs.len() + 1);
            fds.push(sys::poll_in(self.wake_rx.0.as_fd()));
            for p in &procs {
                if let Some(fd) = p.pidfd() {
                    fds.push(sys::poll_in(fd));
                    polled.push(p);
                }
            }
            if sys::poll_forever(&mut fds).is_err() {
                continue; // EINTR; nothing else can fail with valid arguments
            }
            if sys::poll_saw(&fds[0]) {
                let _ = self.wake_rx.recv(&mut drain);
            }
            let ended: Vec<&Arc<Process>> = polled
                .iter()
                .zip(&fds[1..])
                .filter(|(_, fd)| sys::poll_saw(fd))
                .map(|(p, _)| *p)
                .collect();
            if ended.is_empty() {
                continue;
            }
            let hooks: Vec<Hook> = {
                let mut list = self.list.lock();
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *list)
                    .into_iter()
                    .partition(|(p, _)| ended.iter().any(|e| Arc::ptr_eq(e, p)));
                *list = kept;
                gone.into_iter().map(|(_, h)| h).collect()
            };
            for h in hooks {
                h();
            }
        }
    }
}
