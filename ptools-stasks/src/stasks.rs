//! The master side: [`STasks`] (one group of server tasks), [`STasksBuilder`], and the
//! calls that start, call and stop a group.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use ptools_shm::{Prefix, ShmArray, ShmBuilder, ShmCfg, ShmElem, ShmError, ShmSet};
use ptools_workerset::{Cluster, CodeOffset, RemoteRef, Termination, WorkerStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::TaskContext;
use crate::error::{Error, PmapError, Result};
use crate::registry::{self, Call, Fault, StartMsg, WireCfg};

/// Group ids, unique within this master process (a worker belongs to one master, so
/// they are unique within every worker too).
static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// How long starting and stopping wait for each worker by default.
const DEFAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// The state of one server task, as the handle knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskStatus {
    /// Registered on a live worker.
    Running,
    /// Its worker died (or was removed from the cluster).
    Died {
        /// The worker id.
        id: usize,
        /// The worker's pid.
        pid: i32,
        /// How it ended.
        termination: Termination,
    },
    /// The group was stopped.
    Stopped,
}

/// Options for starting a group of server tasks.
///
/// ```
/// # ptools_workerset::enable_test_support!();
/// # fn main() -> Result<(), ptools_stasks::Error> {
/// use ptools_shm::{Prefix, ShmCfg};
/// use ptools_stasks::STasks;
/// use ptools_workerset::Cluster;
/// use std::time::{Duration, Instant};
///
/// let cluster = Cluster::new();
/// let ids = cluster.addprocs(2)?;
/// let cfgs = [ShmCfg::new::<f64>("x", 1000)?];
/// let h = STasks::builder()
///     .cluster(&cluster)
///     .workers(&ids)
///     .call_timeout(Duration::from_secs(60))
///     .start(&cfgs, &Prefix::job())?;
/// assert_eq!(h.workers(), &ids[..]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "an STasksBuilder does nothing until `start` is called"]
pub struct STasksBuilder {
    cluster: Option<Cluster>,
    workers: Option<Vec<usize>>,
    addprocs_if_none: Option<usize>,
    call_timeout: Option<Duration>,
    control_timeout: Duration,
    reserve: Reserve,
    populate: bool,
}

impl Default for STasksBuilder {
    fn default() -> STasksBuilder {
        STasksBuilder {
            cluster: None,
            workers: None,
            addprocs_if_none: None,
            call_timeout: None,
            control_timeout: DEFAULT_CONTROL_TIMEOUT,
            reserve: Reserve::default(),
            populate: false,
        }
    }
}

impl STasksBuilder {
    /// The cluster whose workers run the tasks (default: the process-wide default
    /// cluster of ptools-workerset).
    pub fn cluster(mut self, cluster: &Cluster) -> STasksBuilder {
        self.cluster = Some(cluster.clone());
        self
    }

    /// The workers to run one task each, in task order (default: every worker of the
    /// cluster, ascending).
    pub fn workers(mut self, ids: &[usize]) -> STasksBuilder {
        self.workers = Some(ids.to_vec());
        self
    }

    /// When the cluster has no worker (and no [`workers`](Self::workers) are given),
    /// start `n` there first, instead of failing with [`Error::NoWorkers`]. The workers
    /// stay in the cluster after the group stops. Default: off, nothing is started behind
    /// the caller's back. `n = 0` is refused with [`Error::InvalidArgument`].
    ///
    /// ```
    /// ptools_workerset::enable_test_support!();
    /// use ptools_shm::Prefix;
    /// use ptools_stasks::STasks;
    ///
    /// fn main() -> Result<(), ptools_stasks::Error> {
    ///     ptools_workerset::init();
    ///     let cluster = ptools_workerset::Cluster::new(); // no workers yet
    ///     let h = STasks::builder()
    ///         .cluster(&cluster)
    ///         .addprocs_if_none(2)
    ///         .start(&[], &Prefix::job())?;
    ///     assert_eq!(h.count(), 2);
    ///     Ok(())
    /// }
    /// ```
    pub fn addprocs_if_none(mut self, n: usize) -> STasksBuilder {
        self.addprocs_if_none = Some(n);
        self
    }

    /// How long one `pmap_stasks` waits for its tasks, all together (default: no limit;
    /// a dead worker still fails its task at once). A task still running then gives
    /// [`Error::Timeout`]; it goes on running in its worker, and the task's later calls
    /// queue behind it.
    pub fn call_timeout(mut self, t: Duration) -> STasksBuilder {
        self.call_timeout = Some(t);
        self
    }

    /// How long starting and stopping wait for each worker to attach or detach (default
    /// 60 s). A stop that times out still unlinks every array.
    pub fn control_timeout(mut self, t: Duration) -> STasksBuilder {
        self.control_timeout = t;
        self
    }

    /// Who allocates the arrays' pages, and when (default [`Reserve::Tasks`]).
    pub fn reserve(mut self, reserve: Reserve) -> STasksBuilder {
        self.reserve = reserve;
        self
    }

    /// Pre-fault the mappings, in the master and in every task (default `false`); see
    /// [`ShmBuilder::populate`].
    pub fn populate(mut self, populate: bool) -> STasksBuilder {
        self.populate = populate;
        self
    }

    /// Creates the arrays `cfgs` in the master and starts one server task per worker,
    /// each with the arrays mapped in and an empty task-local storage.
    ///
    /// The arrays are created under the prefix `<prefix>.s<group>` (see
    /// [`STasks::prefix`]), so that two groups never collide.
    ///
    /// # Errors
    ///
    /// [`Error::NoWorkers`] when the cluster has no worker and
    /// [`addprocs_if_none`](Self::addprocs_if_none) was not given ([`Error::Worker`] when
    /// those cannot be started);
    /// [`Error::InvalidArgument`] for an empty or duplicate worker list, the master (id 1)
    /// in it, or a prefix that leaves no room for the group suffix; [`Error::Shm`] when
    /// the master cannot create the arrays; [`Error::Attach`], [`Error::WorkerDied`] or
    /// [`Error::Timeout`] when a worker cannot attach them; `Error::Shm(ShmError::OutOfSpace)`
    /// when `/dev/shm` has no room for them, whoever reserves ([`Reserve`]). On any error
    /// every task already started is stopped again and the arrays are unlinked.
    pub fn start(self, cfgs: &[ShmCfg], prefix: &Prefix) -> Result<STasks> {
        let cluster = match &self.cluster {
            Some(c) => c.clone(),
            None => ptools_workerset::default_cluster().clone(),
        };
        let workers = match &self.workers {
            Some(w) => w.clone(),
            None => default_workers(&cluster, self.addprocs_if_none)?,
        };
        check_workers(&workers)?;
        let wire = cfgs
            .iter()
            .map(|c| {
                WireCfg::from_cfg(c).ok_or_else(|| {
                    Error::InvalidArgument(format!("unsupported element type {}", c.elem()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        match self.start_once(&cluster, &workers, cfgs, &wire, prefix, self.reserve) {
            Ok(h) => Ok(h),
            // A kernel without MADV_POPULATE_WRITE: the master reserves instead.
            Err(Started::Unsupported) => self
                .start_once(&cluster, &workers, cfgs, &wire, prefix, Reserve::Master)
                .map_err(Started::into_error),
            Err(e) => Err(e.into_error()),
        }
    }

    fn start_once(
        &self,
        cluster: &Cluster,
        workers: &[usize],
        cfgs: &[ShmCfg],
        wire: &[WireCfg],
        prefix: &Prefix,
        reserve: Reserve,
    ) -> std::result::Result<STasks, Started> {
        let group = NEXT_GROUP.fetch_add(1, Ordering::Relaxed);
        let gprefix = group_prefix(prefix, group)?;
        let arrays = ShmBuilder::new()
            .prefix(gprefix.clone())
            .reserve(reserve == Reserve::Master)
            .populate(self.populate)
            .create(cfgs)
            .map_err(Error::from)?;
        let ntasks = workers.len();
        let mut h = STasks {
            cluster: cluster.clone(),
            group,
            workers: workers.to_vec(),
            prefix: gprefix,
            cfgs: cfgs.to_vec(),
            arrays: Some(arrays),
            dead: Mutex::new(vec![None; ntasks]),
            call_timeout: self.call_timeout,
            control_timeout: self.control_timeout,
        };
        // Send every attach first, then collect: the workers attach in parallel.
        let refs: Vec<_> = h
            .workers
            .iter()
            .enumerate()
            .map(|(task, &id)| {
                let msg = StartMsg {
                    group,
                    task,
                    ntasks,
                    prefix: h.prefix.as_str().to_owned(),
                    cfgs: wire.to_vec(),
                    populate: self.populate,
                    reserve_share: reserve == Reserve::Tasks,
                };
                h.cluster.remotecall(id, registry::register, msg)
            })
            .collect();
        let mut first = None;
        let mut unsupported = false;
        for (task, r) in refs.into_iter().enumerate() {
            let id = h.workers[task];
            let out = match r {
                Ok(r) => h.fetch(task, r, Some(h.control_timeout)),
                Err(e) => Err(Error::from_worker(task, id, e)),
            };
            let e = match out {
                Ok(Ok(())) => continue,
                Ok(Err(Fault::Attach(message))) => Error::Attach { task, id, message },
                // `register` reports no `ForeignHandler`: it runs no handler.
                Ok(Err(Fault::NotRegistered | Fault::ForeignHandler)) => {
                    Error::NotRegistered { task, id }
                }
                Ok(Err(Fault::OutOfSpace { name, bytes })) => {
                    Error::Shm(ShmError::OutOfSpace { name, bytes })
                }
                Ok(Err(Fault::Unsupported)) => {
                    unsupported = true;
                    Error::Attach {
                        task,
                        id,
                        message: "MADV_POPULATE_WRITE is not supported".into(),
                    }
                }
                Err(e) => e,
            };
            first.get_or_insert(e);
        }
        match first {
            None => Ok(h),
            Some(e) => {
                // Detach where it worked, unlink the arrays; the start's error is the one
                // worth reporting.
                let _ = h.stop();
                Err(if unsupported {
                    Started::Unsupported
                } else {
                    Started::Failed(e)
                })
            }
        }
    }
}

/// How a start attempt failed.
enum Started {
    /// A task could not reserve its share: retry with the master reserving.
    Unsupported,
    Failed(Error),
}

impl Started {
    fn into_error(self) -> Error {
        match self {
            Started::Unsupported => Error::Attach {
                task: 0,
                id: 0,
                message: "MADV_POPULATE_WRITE is not supported".into(),
            },
            Started::Failed(e) => e,
        }
    }
}

impl From<Error> for Started {
    fn from(e: Error) -> Started {
        Started::Failed(e)
    }
}

/// Who allocates the pages of a group's arrays, and when.
///
/// Allocating a page of `/dev/shm` zeroes it; reserving all pages up front turns a full
/// `/dev/shm` into an error at start instead of a `SIGBUS` in whichever process first
/// touches a page that cannot be allocated.
///
/// The default is [`Reserve::Tasks`]: it reserves as safely as the master does, and the
/// zeroing scales with the number of tasks instead of running on one core. On the 2-core
/// machines here (256 MiB, 2 tasks, seven interleaved runs) the two were within noise of
/// each other end to end (`Tasks` faster in four), and `Tasks` was never slower than the
/// Python peer (shared_memory + numpy + `Pool(2)`: from even to 1.46x faster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reserve {
    /// The master reserves every page when it creates the arrays (`posix_fallocate`),
    /// alone; see `ptools_shm::ShmBuilder::reserve`.
    Master,
    /// Every task allocates and maps its contiguous share of every array when the group
    /// starts, all tasks in parallel (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+; it
    /// fails instead of raising `SIGBUS` when `/dev/shm` is full, so this reserves as
    /// safely as [`Reserve::Master`]), and a task that later writes its share takes no
    /// page faults. On a kernel without it, the start falls back to [`Reserve::Master`].
    #[default]
    Tasks,
    /// Nothing is reserved: pages are allocated at first touch, and a full `/dev/shm`
    /// kills the touching process with `SIGBUS`. Only for small throw-away arrays.
    None,
}

/// Every worker of `cluster`; with none, `addprocs_if_none` workers started first, or
/// [`Error::NoWorkers`] when the caller did not ask for that.
fn default_workers(cluster: &Cluster, addprocs_if_none: Option<usize>) -> Result<Vec<usize>> {
    let w = cluster.workers();
    if w != [1] {
        return Ok(w);
    }
    match addprocs_if_none {
        None => Err(Error::NoWorkers),
        Some(0) => Err(Error::InvalidArgument(
            "addprocs_if_none(0) would start no worker".into(),
        )),
        Some(n) => Ok(cluster.addprocs(n)?),
    }
}

fn check_workers(workers: &[usize]) -> Result<()> {
    if workers.is_empty() {
        return Err(Error::InvalidArgument("no workers given".into()));
    }
    if workers.contains(&1) {
        return Err(Error::InvalidArgument(
            "the master (id 1) cannot run a server task".into(),
        ));
    }
    let mut sorted = workers.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidArgument(
            "a worker appears twice: one server task per worker".into(),
        ));
    }
    Ok(())
}

/// `<prefix>.s<group in hex>`: `.` is allowed in prefixes and `_` is not, so the result
/// still splits back into prefix and name in segment names.
fn group_prefix(prefix: &Prefix, group: u64) -> Result<Prefix> {
    Prefix::new(format!("{}.s{group:x}", prefix.as_str())).map_err(|e| {
        Error::InvalidArgument(format!(
            "prefix {:?} leaves no room for the group suffix: {e}",
            prefix.as_str()
        ))
    })
}

/// A group of server tasks: one per worker, each with its task-local storage and the
/// group's arrays mapped in; the master holds the same arrays.
///
/// Made by [`start_stasks`](crate::start_stasks) or [`STasks::builder`]. `&STasks` can
/// be shared between threads; calls to one task run one at a time, in the order made.
///
/// # Caveats
///
/// Dropping the handle stops the group as [`stop`](Self::stop) does: the arrays are
/// unlinked and every live task drops its state and mappings. A task busy in a long call
/// answers the stop after it, so a drop waits up to the control timeout (60 s by default,
/// [`STasksBuilder::control_timeout`]). The workers themselves stay (they belong to the
/// cluster). A master killed with `SIGKILL` runs no destructor:
/// its workers exit (they never outlive the master), and the arrays stay in `/dev/shm`
/// until `ptools_shm::remove_stale_shm` removes them.
pub struct STasks {
    cluster: Cluster,
    group: u64,
    workers: Vec<usize>,
    prefix: Prefix,
    cfgs: Vec<ShmCfg>,
    /// `None` once stopped.
    arrays: Option<ShmSet>,
    /// Per task: the worker's pid and termination once it is known to have died.
    dead: Mutex<Vec<Option<(i32, Termination)>>>,
    call_timeout: Option<Duration>,
    control_timeout: Duration,
}

impl STasks {
    /// Options for a new group.
    pub fn builder() -> STasksBuilder {
        STasksBuilder::default()
    }

    /// The number of server tasks (PTools.jl's `count_stasks`), dead ones included:
    /// `pmap_stasks` takes exactly this many arguments.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// The worker of each task, in task order.
    pub fn workers(&self) -> &[usize] {
        &self.workers
    }

    /// The group's id, unique in this process ([`TaskContext::group`] in the tasks).
    pub fn group(&self) -> u64 {
        self.group
    }

    /// The prefix the arrays were created under: `<prefix given>.s<group>`. Another
    /// process attaches them with `ShmSet::attach(cfgs, h.prefix())` (not this one: a
    /// process maps a segment once, and the master already holds them here).
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// The arrays' configurations.
    pub fn cfgs(&self) -> &[ShmCfg] {
        &self.cfgs
    }

    /// Whether the group was stopped.
    pub fn is_stopped(&self) -> bool {
        self.arrays.is_none()
    }

    /// The master's handles on the arrays.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] after [`stop`](Self::stop).
    pub fn arrays(&self) -> Result<&ShmSet> {
        self.arrays.as_ref().ok_or(Error::Stopped)
    }

    /// The master's handles on the arrays, mutably.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] after [`stop`](Self::stop).
    pub fn arrays_mut(&mut self) -> Result<&mut ShmSet> {
        self.arrays.as_mut().ok_or(Error::Stopped)
    }

    /// The array `name` in the master. Read results after [`pmap`](Self::pmap) returned:
    /// while it runs, the tasks may be writing (ptools-shm's crate docs, "Safety model").
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`], or [`Error::Shm`] for a wrong name or element type.
    pub fn array<T: ShmElem>(&self, name: &str) -> Result<&ShmArray<T>> {
        Ok(self.arrays()?.get(name)?)
    }

    /// The array `name` in the master, mutably.
    ///
    /// # Errors
    ///
    /// As [`array`](Self::array).
    pub fn array_mut<T: ShmElem>(&mut self, name: &str) -> Result<&mut ShmArray<T>> {
        Ok(self.arrays_mut()?.get_mut(name)?)
    }

    /// The state of task `task` as far as the handle knows: a death is seen by the next
    /// call, or here when the cluster has already noticed it.
    ///
    /// # Panics
    ///
    /// If `task >= self.count()`.
    pub fn task_status(&self, task: usize) -> TaskStatus {
        if self.is_stopped() {
            return TaskStatus::Stopped;
        }
        let id = self.workers[task];
        if let Some((pid, termination)) = self.dead_lock()[task] {
            return TaskStatus::Died {
                id,
                pid,
                termination,
            };
        }
        // The cluster's own record of the death, with how the worker ended: no I/O.
        if let WorkerStatus::Gone(ptools_workerset::Error::WorkerDied {
            pid, termination, ..
        }) = self.cluster.worker_status(id)
        {
            self.dead_lock()[task] = Some((pid, termination));
            return TaskStatus::Died {
                id,
                pid,
                termination,
            };
        }
        TaskStatus::Running
    }

    /// The tasks whose worker is known to have died.
    pub fn dead_tasks(&self) -> Vec<usize> {
        (0..self.count())
            .filter(|&t| matches!(self.task_status(t), TaskStatus::Died { .. }))
            .collect()
    }

    fn dead_lock(&self) -> MutexGuard<'_, Vec<Option<(i32, Termination)>>> {
        self.dead.lock()
    }

    fn died_error(&self, task: usize) -> Option<Error> {
        let (pid, termination) = self.dead_lock()[task]?;
        Some(Error::WorkerDied {
            task,
            id: self.workers[task],
            pid,
            termination,
        })
    }

    /// Waits for one reply, maps runtime errors to task errors and records deaths.
    fn fetch<R: DeserializeOwned>(
        &self,
        task: usize,
        r: RemoteRef<R>,
        timeout: Option<Duration>,
    ) -> Result<R> {
        let out = match timeout {
            Some(t) => r.fetch_timeout(t),
            None => r.fetch(),
        };
        out.map_err(|e| self.task_error(task, e))
    }

    fn task_error(&self, task: usize, e: ptools_workerset::Error) -> Error {
        let e = Error::from_worker(task, self.workers[task], e);
        if let Error::WorkerDied {
            pid, termination, ..
        } = e
        {
            self.dead_lock()[task] = Some((pid, termination));
        }
        e
    }

    /// Runs `f(ctx, arg)` in every server task, task `i` getting the `i`-th argument, and
    /// returns the results in task order; see [`pmap_stasks`](crate::pmap_stasks).
    ///
    /// # Errors
    ///
    /// [`PmapError::Refused`] with [`Error::Stopped`], [`Error::CountMismatch`] or
    /// [`Error::Worker`] with [`ForeignFunction`](ptools_workerset::Error::ForeignFunction)
    /// (`f` is not in the executable's own code) before anything is sent; otherwise [`PmapError::Failed`] with every task's outcome when
    /// at least one task failed ([`Error::TaskPanic`], [`Error::WorkerDied`],
    /// [`Error::Timeout`], [`Error::Worker`] for encode or decode failures).
    pub fn pmap<A, R, I>(
        &self,
        f: fn(&mut TaskContext, A) -> R,
        args: I,
    ) -> Result<Vec<R>, PmapError<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        if self.is_stopped() {
            return Err(PmapError::Refused(Error::Stopped));
        }
        if let Err(e) = CodeOffset::of(f as usize) {
            return Err(PmapError::Refused(e.into()));
        }
        let args: Vec<A> = args.into_iter().collect();
        if args.len() != self.count() {
            return Err(PmapError::Refused(Error::CountMismatch {
                expected: self.count(),
                got: args.len(),
            }));
        }
        let remote: fn(Call<A, R>) -> std::result::Result<R, Fault> = registry::run::<A, R>;
        let deadline = self.call_timeout.map(|t| Instant::now() + t);
        // Send every call before waiting for any: the tasks run in parallel.
        let refs: Vec<Result<RemoteRef<std::result::Result<R, Fault>>>> = args
            .into_iter()
            .enumerate()
            .map(|(task, arg)| {
                if let Some(e) = self.died_error(task) {
                    return Err(e);
                }
                let call = Call::new(self.group, f, arg).map_err(|e| self.task_error(task, e))?;
                self.cluster
                    .remotecall(self.workers[task], remote, call)
                    .map_err(|e| self.task_error(task, e))
            })
            .collect();
        let outcomes: Vec<Result<R>> = refs
            .into_iter()
            .enumerate()
            .map(|(task, r)| {
                r.and_then(|r| {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    self.fetch(task, r, left)
                })
                .and_then(|res| {
                    res.map_err(|fault| match fault {
                        // The worker found no code at the handler's offset (the master
                        // checked it lies in this executable's code, so never expected).
                        Fault::ForeignHandler => Error::Worker {
                            task: Some(task),
                            source: ptools_workerset::Error::ForeignFunction { addr: f as usize },
                        },
                        // `run` reports no other fault than a missing registration.
                        _ => Error::NotRegistered {
                            task,
                            id: self.workers[task],
                        },
                    })
                })
            })
            .collect();
        if outcomes.iter().all(Result::is_ok) {
            Ok(outcomes.into_iter().flatten().collect())
        } else {
            Err(PmapError::Failed(outcomes))
        }
    }

    /// Stops the group: the master unmaps and unlinks the arrays while every live task
    /// drops its state and its mappings, and returns once the tasks have answered.
    /// Stopping again does nothing; later calls give [`Error::Stopped`].
    ///
    /// # Errors
    ///
    /// The first failure of a live worker to detach in time ([`Error::Timeout`],
    /// [`Error::Worker`]). Dead workers are not an error here. Whatever happens, every
    /// array is unlinked.
    pub fn stop(&mut self) -> Result<()> {
        let Some(arrays) = self.arrays.take() else {
            return Ok(());
        };
        let refs: Vec<_> = (0..self.count())
            .map(|task| {
                if self.died_error(task).is_some() {
                    return None;
                }
                Some(
                    self.cluster
                        .remotecall(self.workers[task], registry::unregister, self.group),
                )
            })
            .collect();
        // Unmap and unlink here while the tasks unmap theirs: the page-table teardown of
        // big arrays then runs in every process at once, and the names are free as soon
        // as possible. The tasks' mappings stay valid until they drop them.
        drop(arrays);
        let mut first = None;
        for (task, r) in refs.into_iter().enumerate() {
            let out = match r {
                None => continue,
                Some(Ok(r)) => self.fetch(task, r, Some(self.control_timeout)).map(drop),
                Some(Err(e)) => Err(self.task_error(task, e)),
            };
            match out {
                Ok(()) | Err(Error::WorkerDied { .. }) => {}
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for STasks {
    fn drop(&mut self) {
        // Errors here mean a worker did not detach in time; the arrays are unlinked all
        // the same, and the worker drops its mappings when it exits.
        let _ = self.stop();
    }
}

impl fmt::Debug for STasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("STasks")
            .field("group", &self.group)
            .field("workers", &self.workers)
            .field("prefix", &self.prefix)
            .field("arrays", &self.arrays)
            .field("dead", &*self.dead_lock())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{STasks, check_workers, group_prefix};
    use ptools_shm::Prefix;

    #[test]
    fn worker_lists_are_checked() {
        assert!(check_workers(&[2, 3]).is_ok());
        assert!(check_workers(&[]).is_err());
        assert!(check_workers(&[1, 2]).is_err());
        assert!(check_workers(&[2, 3, 2]).is_err());
    }

    #[test]
    fn group_prefixes_are_distinct_and_bounded() {
        let p = Prefix::new("job").unwrap();
        assert_eq!(group_prefix(&p, 1).unwrap().as_str(), "job.s1");
        assert_eq!(group_prefix(&p, 255).unwrap().as_str(), "job.sff");
        let long = Prefix::new("a".repeat(31)).unwrap();
        assert!(group_prefix(&long, 1).is_err());
        // The job prefix (at most 19 bytes) leaves room for 65536 groups and more.
        assert!(group_prefix(&Prefix::job(), 0xffff).is_ok());
    }

    #[test]
    fn handles_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<STasks>();
    }
}
