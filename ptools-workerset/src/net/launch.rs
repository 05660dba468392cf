//! Launchers: how workers on other hosts are started, by the engines users already run.
//!
//! A [`Launcher`] starts local processes (an `ssh` client, an `mpirun`, any command) that
//! start this program in worker mode on the target hosts; each worker then connects back
//! to the master over TCP and proves the job's secret. The launcher never sees the
//! connection: it only says how many workers each process it started will bring.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::auth::Secret;
use crate::sys;

/// The environment variable that puts a started program in TCP worker mode; its value
/// says where the master is and how to reach it (no secret in it).
pub(crate) const ENV_TCP: &str = "PTOOLS_WORKER_TCP";
/// The job's secret as 64 hex digits, for launchers that pass it in the environment
/// ([`SecretVia::Env`]).
pub const ENV_SECRET: &str = "PTOOLS_SECRET";
/// A file holding the job's secret (mode 0600, owned by the user), for launchers that pass
/// it through a shared file system ([`SecretVia::File`]).
pub const ENV_SECRET_FILE: &str = "PTOOLS_SECRET_FILE";

/// How a launched worker gets the job's secret. Never on a command line: `argv` is
/// visible to every user of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretVia {
    /// One line on the launched process's standard input (written by the master, then
    /// closed): `ssh` forwards it to the remote command. One process per worker.
    Stdin,
    /// The [`ENV_SECRET`] variable of the launched process (readable by its user only,
    /// in `/proc/<pid>/environ`), for engines that forward the environment to every rank
    /// (`mpirun -x`, `srun --export`). The worker removes it from its environment.
    Env,
    /// A file the master writes (mode 0600, a new file: an existing one is an error) at
    /// this path, read by the workers: for hosts that share a file system. The master
    /// removes it when the start ends, joined or failed.
    File(PathBuf),
}

impl SecretVia {
    fn word(&self) -> &'static str {
        match self {
            SecretVia::Stdin => "stdin",
            SecretVia::Env => "env",
            SecretVia::File(_) => "file",
        }
    }
}

/// One start of workers, as a [`Launcher`] sees it: the command that starts one worker,
/// and a way to start local processes that the cluster owns.
pub struct LaunchJob {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// `PTOOLS_WORKER_TCP`'s value without the `secret=` field.
    pub(crate) tcp: String,
    pub(crate) secret: Arc<Secret>,
    /// Numbers the processes started with the secret on stdin, so that each worker says
    /// which one brought it.
    pub(crate) next_slot: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for LaunchJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchJob")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// Quotes `s` for a POSIX shell: one word, whatever it holds.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl LaunchJob {
    /// The program to start on the target hosts (see
    /// [`ClusterBuilder::remote_program`](crate::ClusterBuilder::remote_program)).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The environment a worker needs, as `NAME=value` (the secret is not in it). With
    /// `bind`, the worker connects from that address of its host (Julia's `bind_addr`):
    /// the address the master and host targets then know it by.
    pub fn env(&self, via: &SecretVia, bind: Option<IpAddr>) -> Vec<(String, String)> {
        let from = bind.map(|a| format!(",from={a}")).unwrap_or_default();
        let mut v = vec![(
            ENV_TCP.to_owned(),
            format!("{},secret={}{from}", self.tcp, via.word()),
        )];
        if let SecretVia::File(p) = via {
            v.push((ENV_SECRET_FILE.to_owned(), p.display().to_string()));
        }
        v
    }

    /// The words that start one worker: `env NAME=value ... PROGRAM ARGS...` (`bind`: see
    /// [`env`](Self::env)).
    pub fn command(&self, via: &SecretVia, bind: Option<IpAddr>) -> Vec<String> {
        let mut w = vec!["env".to_owned()];
        w.extend(
            self.env(via, bind)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        w.push(self.program.display().to_string());
        w.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        w
    }

    /// [`command`](Self::command) as one line for a POSIX shell (what `ssh` runs).
    pub fn shell_command(&self, via: &SecretVia, bind: Option<IpAddr>) -> String {
        self.command(via, bind)
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts `cmd` on this host as a launcher process that will bring `workers` workers,
    /// handing it the secret as `via` says. The process dies with the master
    /// (`PR_SET_PDEATHSIG`) and is reaped by the cluster.
    ///
    /// # Errors
    ///
    /// The spawn's own errors; a [`SecretVia::File`] that cannot be written.
    pub fn spawn(&self, mut cmd: Command, via: &SecretVia, workers: usize) -> io::Result<Launched> {
        match via {
            SecretVia::Stdin => {
                cmd.stdin(Stdio::piped());
            }
            SecretVia::Env => {
                cmd.env(ENV_SECRET, self.secret.to_hex())
                    .stdin(Stdio::null());
            }
            SecretVia::File(p) => {
                write_secret_file(p, &self.secret)?;
                cmd.stdin(Stdio::null());
            }
        }
        let master = std::process::id() as i32;
        // SAFETY: the closure runs in the child between fork and exec; it only makes the
        // prctl and getppid system calls (no allocation, no lock), as in the workers'
        // spawn path.
        unsafe {
            cmd.pre_exec(move || {
                if !sys::die_with_parent(master) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let slot = (*via == SecretVia::Stdin).then(|| {
            self.next_slot
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        });
        let secret = slot.map(|n| format!("{} {n:x}", self.secret.to_hex()));
        let spawned = crate::cluster::on_spawner(move || -> io::Result<sys::Process> {
            let mut child = cmd.spawn()?;
            let stdin = child.stdin.take();
            let pid = child.id() as i32;
            drop(child);
            let proc = sys::Process::adopt(pid)?;
            if let (Some(mut w), Some(s)) = (stdin, secret) {
                // One line into an empty pipe never blocks; a launcher that exited at
                // once gives EPIPE, and its exit status says why.
                let _ = w.write_all(format!("{s}\n").as_bytes());
            }
            Ok(proc)
        })
        .and_then(|r| r);
        let proc = match spawned {
            Ok(p) => p,
            Err(e) => {
                if let SecretVia::File(p) = via {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        };
        Ok(Launched {
            proc: Some(Arc::new(proc)),
            workers,
            slot,
            secret_file: match via {
                SecretVia::File(p) => Some(p.clone()),
                _ => None,
            },
        })
    }
}

fn write_secret_file(p: &Path, s: &Secret) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)?;
    f.write_all(format!("{}\n", s.to_hex()).as_bytes())
}

/// A process a launcher started, and how many workers it brings.
#[derive(Debug)]
pub struct Launched {
    /// `None` for workers started by something else (the ranks of the `mpirun` that
    /// started this master).
    pub(crate) proc: Option<Arc<sys::Process>>,
    pub(crate) workers: usize,
    /// The number its worker reports, for a process that brings one worker (stdin).
    pub(crate) slot: Option<u64>,
    /// The secret file written for it, removed when the start ends.
    pub(crate) secret_file: Option<PathBuf>,
}

/// Starts workers on hosts through an engine the user already runs (see [`Ssh`],
/// [`CommandLauncher`]); used with [`Cluster::addprocs_with`](crate::Cluster::addprocs_with).
///
/// An implementation starts its processes with [`LaunchJob::spawn`], each running
/// [`LaunchJob::command`] (or [`LaunchJob::shell_command`]) on its target, and returns
/// them. The cluster then waits for the workers they bring to connect and authenticate,
/// and fails the whole start (killing and reaping every process) when one does not in
/// time, or when a launcher process exits with a failure first.
pub trait Launcher: fmt::Debug + Send + Sync {
    /// Starts the processes for one start of workers.
    ///
    /// # Errors
    ///
    /// Any error starting them (processes already started are killed and reaped by the
    /// caller when they are dropped).
    fn launch(&self, job: &LaunchJob) -> io::Result<Vec<Launched>>;
}

/// Runs a command template once per worker, each with the secret on its standard input:
/// the generic launcher for anything that runs a command on a host (PBS's `pbsdsh`,
/// `kubectl exec -i`, `docker exec -i`, a local shell for testing).
///
/// In each word of the template, `{cmd}` becomes [`LaunchJob::shell_command`] (the whole
/// worker command, quoted for a POSIX shell) and `{program}` the program's path. The
/// worker reads the secret from its standard input: the command must hand its own stdin
/// on (a shell's background job gets `/dev/null`; a [`Launcher`] of your own can pass the
/// secret by environment instead, [`SecretVia::Env`]).
///
/// ```no_run
/// use ptools_workerset::{Cluster, CommandLauncher};
/// # fn main() -> Result<(), ptools_workerset::Error> {
/// let cluster = Cluster::new();
/// // Two workers on this host over TCP, started through a shell.
/// let ids = cluster.addprocs_with(&CommandLauncher::new(["sh", "-c", "exec {cmd}"]).count(2))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CommandLauncher {
    argv: Vec<String>,
    count: usize,
    bind: Option<IpAddr>,
}

impl CommandLauncher {
    /// The template (program first); one worker until [`count`](Self::count) says more.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> CommandLauncher {
        CommandLauncher {
            argv: argv.into_iter().map(Into::into).collect(),
            count: 1,
            bind: None,
        }
    }

    /// How many workers to start: the command runs this many times.
    pub fn count(mut self, n: usize) -> CommandLauncher {
        self.count = n;
        self
    }

    /// The address the workers connect from (see [`LaunchJob::env`]).
    pub fn bind(mut self, addr: IpAddr) -> CommandLauncher {
        self.bind = Some(addr);
        self
    }
}

impl Launcher for CommandLauncher {
    fn launch(&self, job: &LaunchJob) -> io::Result<Vec<Launched>> {
        let Some((prog, rest)) = self.argv.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty command template",
            ));
        };
        let via = SecretVia::Stdin;
        let line = job.shell_command(&via, self.bind);
        let program = job.program.display().to_string();
        let mut out = Vec::with_capacity(self.count);
        for _ in 0..self.count {
            let mut cmd = Command::new(prog);
            cmd.args(
                rest.iter()
                    .map(|w| w.replace("{cmd}", &line).replace("{program}", &program)),
            );
            out.push(job.spawn(cmd, &via, 1)?);
        }
        Ok(out)
    }
}

/// One host of an [`Ssh`] launcher, from a Julia-style spec: `host`, `user@host`,
/// `user@host:port`, then optionally a space and the address the workers there connect
/// from (Julia's `bind_addr`), and optionally `*count` at the end (that many workers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The user to log in as (`ssh -l`), if given.
    pub user: Option<String>,
    /// The host name or address.
    pub host: String,
    /// The ssh port (`ssh -p`), if given.
    pub port: Option<u16>,
    /// How many workers to start there (1 unless `*count`).
    pub count: usize,
    /// The address of that host the workers connect from, if given.
    pub bind: Option<IpAddr>,
}

impl std::str::FromStr for HostSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<HostSpec, String> {
        let bad = |why: &str| format!("host spec {s:?}: {why}");
        let (rest, count) = match s.rsplit_once('*') {
            Some((h, c)) => (
                h,
                c.parse::<usize>()
                    .ok()
                    .filter(|&c| c > 0)
                    .ok_or_else(|| bad("the count after '*' must be a positive integer"))?,
            ),
            None => (s, 1),
        };
        let (rest, bind) = match rest.split_once(' ') {
            Some((h, b)) => (
                h,
                Some(
                    b.trim()
                        .parse::<IpAddr>()
                        .map_err(|_| bad("the bind address must be an IP address"))?,
                ),
            ),
            None => (rest, None),
        };
        // Only plain names: a host or user string reaches ssh, and through `%h`/`%u` in a
        // user's ssh configuration a local shell (CVE-2023-51385).
        let plain = |w: &str| {
            !w.is_empty()
                && !w.starts_with('-')
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let (user, rest) = match rest.split_once('@') {
            Some((u, h)) if plain(u) && !h.contains('@') => (Some(u.to_owned()), h),
            Some(_) => return Err(bad("the user must be a plain name, before one '@'")),
            None => (None, rest),
        };
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad("junk after ']'")),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let is_ip = host.parse::<IpAddr>().is_ok();
        if !is_ip && !plain(host) {
            return Err(bad("not a host name or address"));
        }
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|&p| p > 0))
            .map(|p| p.ok_or_else(|| bad("the port must be 1..=65535")))
            .transpose()?;
        Ok(HostSpec {
            user,
            host: host.to_owned(),
            port,
            count,
            bind,
        })
    }
}

/// Starts workers over OpenSSH: one `ssh` client per worker (`-T`, `BatchMode=yes`: no
/// terminal, never a password prompt), the secret on its standard input, the program
/// started on the host by its path (the same path as here unless
/// [`ClusterBuilder::remote_program`](crate::ClusterBuilder::remote_program) says another).
///
/// Keys, users and ports come from the user's own ssh configuration, as for any `ssh`
/// command; [`option`](Self::option) adds client options.
#[derive(Debug, Clone)]
pub struct Ssh {
    hosts: Vec<HostSpec>,
    ssh: PathBuf,
    options: Vec<String>,
}

impl Ssh {
    /// Workers on these hosts (Julia-style specs, see [`HostSpec`]).
    ///
    /// # Errors
    ///
    /// A spec that does not parse, or no host at all.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(hosts: I) -> Result<Ssh, crate::Error> {
        let hosts = hosts
            .into_iter()
            .map(|h| h.as_ref().parse::<HostSpec>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(crate::Error::InvalidArgument)?;
        if hosts.is_empty() {
            return Err(crate::Error::InvalidArgument("no host given".into()));
        }
        Ok(Ssh {
            hosts,
            ssh: PathBuf::from("ssh"),
            options: Vec::new(),
        })
    }

    /// The ssh client to run (default `ssh`, found on `PATH`).
    pub fn client(mut self, path: impl Into<PathBuf>) -> Ssh {
        self.ssh = path.into();
        self
    }

    /// Adds options given to every ssh client before the host (`-F`, `-i`, `-o K=V`).
    pub fn option(mut self, opt: impl Into<String>) -> Ssh {
        self.options.push(opt.into());
        self
    }

    /// The hosts, as parsed.
    pub fn hosts(&self) -> &[HostSpec] {
        &self.hosts
    }
}

impl Launcher for Ssh {
    fn launch(&self, job: &LaunchJob) -> io::Result<Vec<Launched>> {
        let via = SecretVia::Stdin;
        let mut out = Vec::new();
        for h in &self.hosts {
            let line = job.shell_command(&via, h.bind);
            for _ in 0..h.count {
                let mut cmd = Command::new(&self.ssh);
                cmd.args(["-T", "-o", "BatchMode=yes"]);
                if let Some(u) = &h.user {
                    cmd.args(["-l", u]);
                }
                if let Some(p) = h.port {
                    cmd.args(["-p", &p.to_string()]);
                }
                cmd.args(&self.options).arg("--").arg(&h.host).arg(&line);
                out.push(job.spawn(cmd, &via, 1)?);
            }
        }
        Ok(out)
    }
}

/// Which MPI's `mpirun` an [`Mpirun`] launcher drives: they export variables to the
/// ranks with different options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MpiFlavor {
    /// Open MPI: `-x NAME` (mpirun(1), "Exported Environment Variables").
    OpenMpi,
    /// MPICH and others on Hydra: `-genvlist NAME,NAME` (mpiexec(1)).
    Mpich,
}

/// Starts `np` workers as the ranks of one `mpirun` (Open MPI or MPICH): each rank runs
/// this program in worker mode and joins over TCP. The secret and the master's address
/// reach the ranks in the environment, exported by name (never on the command line).
///
/// The other shape MPI users know, a program started under `mpirun` whose rank 0 is the
/// master, is [`Cluster::addprocs_ranks`](crate::Cluster::addprocs_ranks).
#[derive(Debug, Clone)]
pub struct Mpirun {
    np: usize,
    mpirun: PathBuf,
    hosts: Vec<String>,
    hostfile: Option<PathBuf>,
    options: Vec<String>,
    env: Vec<(String, String)>,
    flavor: Option<MpiFlavor>,
}

impl Mpirun {
    /// `np` workers, started by `mpirun` (found on `PATH`).
    pub fn new(np: usize) -> Mpirun {
        Mpirun {
            np,
            mpirun: PathBuf::from("mpirun"),
            hosts: Vec::new(),
            hostfile: None,
            options: Vec::new(),
            env: Vec::new(),
            flavor: None,
        }
    }

    /// The `mpirun` (or `mpiexec`) to run.
    pub fn client(mut self, path: impl Into<PathBuf>) -> Mpirun {
        self.mpirun = path.into();
        self
    }

    /// Adds a host (`--host`, with `host:slots` as mpirun takes it).
    pub fn host(mut self, h: impl Into<String>) -> Mpirun {
        self.hosts.push(h.into());
        self
    }

    /// A host file (`--hostfile`).
    pub fn hostfile(mut self, p: impl Into<PathBuf>) -> Mpirun {
        self.hostfile = Some(p.into());
        self
    }

    /// Adds an option for mpirun, before the program (`--oversubscribe`, `--mca K V`, ...).
    pub fn option(mut self, o: impl Into<String>) -> Mpirun {
        self.options.push(o.into());
        self
    }

    /// Sets a variable in mpirun's environment (and so in the ranks' on this host).
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Mpirun {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Says which MPI this is, instead of asking `mpirun --version`.
    pub fn flavor(mut self, f: MpiFlavor) -> Mpirun {
        self.flavor = Some(f);
        self
    }

    fn detect(&self) -> io::Result<MpiFlavor> {
        if let Some(f) = self.flavor {
            return Ok(f);
        }
        let out = Command::new(&self.mpirun)
            .arg("--version")
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase()
            + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        if text.contains("open mpi") || text.contains("open-mpi") {
            Ok(MpiFlavor::OpenMpi)
        } else if text.contains("hydra") || text.contains("mpich") {
            Ok(MpiFlavor::Mpich)
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: not Open MPI's or MPICH's mpirun (say which with Mpirun::flavor)",
                    self.mpirun.display()
                ),
            ))
        }
    }
}

impl Launcher for Mpirun {
    fn launch(&self, job: &LaunchJob) -> io::Result<Vec<Launched>> {
        if self.np == 0 {
            return Ok(Vec::new());
        }
        let flavor = self.detect()?;
        let via = SecretVia::Env;
        let env = job.env(&via, None);
        let mut names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        names.push(ENV_SECRET);
        let mut cmd = Command::new(&self.mpirun);
        cmd.args(&self.options).args(["-np", &self.np.to_string()]);
        if !self.hosts.is_empty() {
            cmd.args(["--host", &self.hosts.join(",")]);
        }
        if let Some(f) = &self.hostfile {
            cmd.arg("--hostfile").arg(f);
        }
        match flavor {
            MpiFlavor::OpenMpi => {
                for n in &names {
                    cmd.args(["-x", n]);
                }
            }
            MpiFlavor::Mpich => {
                cmd.args(["-genvlist", &names.join(",")]);
            }
        }
        cmd.arg(&job.program).args(&job.args);
        cmd.envs(env).envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(vec![job.spawn(cmd, &via, self.np)?])
    }
}

/// Starts workers as the tasks of one `srun` step, inside a Slurm allocation (or one
/// `srun` makes): `--ntasks`, the environment exported to every task (Slurm's default,
/// `--export=ALL`), the secret in it, never on the command line.
#[derive(Debug, Clone)]
pub struct Srun {
    ntasks: usize,
    srun: PathBuf,
    options: Vec<String>,
    env: Vec<(String, String)>,
}

impl Srun {
    /// `ntasks` workers, started by `srun` (found on `PATH`).
    pub fn new(ntasks: usize) -> Srun {
        Srun {
            ntasks,
            srun: PathBuf::from("srun"),
            options: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The `srun` to run.
    pub fn client(mut self, path: impl Into<PathBuf>) -> Srun {
        self.srun = path.into();
        self
    }

    /// Adds an option for srun, before the program (`--nodes=2`, `--nodelist=...`).
    /// `--export` must keep the environment (the default does).
    pub fn option(mut self, o: impl Into<String>) -> Srun {
        self.options.push(o.into());
        self
    }

    /// Sets a variable in srun's environment (exported to the tasks), e.g. `SLURM_CONF`.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Srun {
        self.env.push((k.into(), v.into()));
        self
    }
}

impl Launcher for Srun {
    fn launch(&self, job: &LaunchJob) -> io::Result<Vec<Launched>> {
        if self.ntasks == 0 {
            return Ok(Vec::new());
        }
        let via = SecretVia::Env;
        let mut cmd = Command::new(&self.srun);
        cmd.arg(format!("--ntasks={}", self.ntasks))
            // The secret on stdin would be broadcast; the tasks read none.
            .arg("--input=none")
            .args(&self.options)
            .arg(&job.program)
            .args(&job.args)
            .envs(job.env(&via, None))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(vec![job.spawn(cmd, &via, self.ntasks)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs() {
        let h: HostSpec = "alice@node7:2222*4".parse().unwrap();
        assert_eq!(
            h,
            HostSpec {
                user: Some("alice".into()),
                host: "node7".into(),
                port: Some(2222),
                count: 4,
                bind: None,
            }
        );
        let h: HostSpec = "node7".parse().unwrap();
        assert_eq!((h.user, h.port, h.count), (None, None, 1));
        let h: HostSpec = "node7 10.1.2.3*2".parse().unwrap();
        assert_eq!((h.bind, h.count), (Some("10.1.2.3".parse().unwrap()), 2));
        assert!("node7 nothost".parse::<HostSpec>().is_err());
        let h: HostSpec = "[::1]:22".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", Some(22)));
        for bad in [
            "",
            "*3",
            "h*0",
            "h*x",
            "@h",
            "h:0",
            "h:99999",
            "-oProxyCommand=x",
            "a b",
        ] {
            assert!(bad.parse::<HostSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d-e"), "abc/d-e");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's $x"), r"'it'\''s $x'");
    }
}
