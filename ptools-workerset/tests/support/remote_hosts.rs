//! Other hosts, stood in for on this machine over loopback only: a private OpenSSH server
//! reached as 127.0.0.1, 127.0.0.2 and 127.0.0.3 ([`Sshd`]), the `mpirun` prefix that works
//! here ([`mpirun_command`]), and a private three-node Slurm cluster on the same addresses
//! ([`Slurm`]). The launchers' tests drive the real programs through these, so what they
//! test is what runs on a cluster; nothing here sends a packet beyond 127.0.0.0/8.
//!
//! Include it from a test file with
//!
//! ```text
//! #[path = "support/remote_hosts.rs"]
//! mod remote_hosts;
//! ```
//!
//! # Skipping
//!
//! Every starter returns `Err(reason)` when its programs are missing or will not run here;
//! the test then calls [`skip`], which prints `SKIPPED: <test>: <reason>` on the real
//! stderr (past libtest's capture, so it shows in every run) and returns. `cargo xtask ci`
//! installs the programs first (`cargo xtask setup`) and names those present in
//! [`REQUIRE_VAR`]; for a tool named there, [`skip`] panics instead, so a harness that
//! breaks where the tools exist fails CI rather than passing as skipped.
//!
//! # Cleaning up
//!
//! Every daemon is a child of the test and is killed and reaped on drop, and its temporary
//! folder removed. Processes that are not our children (an ssh session's commands, Slurm's
//! step daemons and tasks) are found by a tag: a variable unique to each instance, which
//! the daemons inherit and which ssh (`SetEnv`) and srun (which exports its environment)
//! carry into every remote command; and by the instance's folder, for a process that
//! rewrites its environment but keeps a file there open (slurmstepd and slurmd's log).
//! Drop kills whatever is tied to the instance so ([`processes_of`]), so a test that
//! stops a cluster mid-step, or fails half-way, leaves no process behind either. Every wait
//! has a deadline.

#![allow(
    dead_code,
    reason = "each test file that includes this module uses only some of it"
)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The addresses that stand for three hosts. All of 127.0.0.0/8 is loopback on Linux, so
/// each reaches this machine; [`Sshd`] and [`Slurm`] listen on all three. They share one
/// `hostname`; a remote command tells which it was reached as from the third field of
/// `SSH_CONNECTION` (the server address), a Slurm task from `SLURMD_NODENAME`.
pub(crate) const HOSTS: [&str; 3] = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];

/// Names the tools this machine is known to have (`ssh,mpirun,srun`, any subset); set by
/// `cargo xtask ci` on its test rows. A starter failing for a listed tool is a test failure.
pub(crate) const REQUIRE_VAR: &str = "PTOOLS_REMOTE_TESTS_REQUIRE";

/// How long a daemon gets to become ready. Generous: CI builds on the same 2 cores.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How long one helper command (ssh-keygen, sinfo, the mpirun probe) may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// How long drop waits for a process to go after a signal before the next, harder one.
const STOP_DEADLINE: Duration = Duration::from_secs(3);

/// A family of programs, named as in [`REQUIRE_VAR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `sshd`, `ssh`, `ssh-keygen` (Debian: openssh-server, openssh-client).
    Ssh,
    /// `mpirun` (Debian: openmpi-bin).
    Mpirun,
    /// `srun` and a Slurm cluster to run it in (Debian: slurm-wlm).
    Srun,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ssh => "ssh",
            Tool::Mpirun => "mpirun",
            Tool::Srun => "srun",
        }
    }

    /// Whether `cargo xtask ci` found this tool installed on this machine.
    pub(crate) fn required(self) -> bool {
        std::env::var(REQUIRE_VAR)
            .is_ok_and(|list| list.split(',').any(|t| t.trim() == self.name()))
    }
}

/// Reports that `test` cannot run here: prints `SKIPPED: <test>: <reason>` on the process's
/// stderr, bypassing libtest's output capture so that the line shows in a passing run.
///
/// # Panics
///
/// When [`REQUIRE_VAR`] names `tool`: the machine has the programs, so `reason` is a
/// fault of the harness or of the code under test, not of the machine.
pub(crate) fn skip(test: &str, tool: Tool, reason: &str) {
    assert!(
        !tool.required(),
        "{test}: {reason} ({REQUIRE_VAR} says this machine has {})",
        tool.name()
    );
    // A quoted log runs over several lines; indented, it reads as part of this one.
    let reason = reason.trim().replace('\n', "\n    ");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}

// ---------------------------------------------------------------------------------------
// sshd

/// A private OpenSSH server on 127.0.0.1-3, logging in the current user (root in CI) with
/// a key made for it alone.
///
/// # How it is set up
///
/// In a folder of its own (`$TMPDIR/ptools-sshd-<pid>-<n>`): an ed25519 host key and user
/// key (`ssh-keygen -t ed25519 -N ''`), `authorized_keys` with the user key, an
/// `sshd_config` and an `ssh_config` (see [`Sshd::client_options`]). The server runs as
/// `sshd -D -e -f <config>` (`-D` keeps it our child, `-e` sends its log to `sshd.log`)
/// with `PasswordAuthentication no`, `PermitRootLogin prohibit-password`, `UsePAM no`
/// (PAM would need the system's service file, and its session modules are not wanted
/// here), `StrictModes no` (the folder is under `/tmp`), its `PidFile` in the folder, and
/// `ListenAddress` on each of [`HOSTS`] at one free port. `/run/sshd`, the
/// privilege-separation folder sshd insists on, is created when missing (Debian's init
/// script does that, and nothing has run it in a container).
///
/// Like a stock sshd it accepts no environment from clients (`AcceptEnv` is only the
/// cleanup tag) and `PermitUserEnvironment` stays `no`: a launcher must hand a remote
/// worker what it needs on the command line or on stdin, because a real cluster's sshd
/// drops `SendEnv` variables (Debian's accepts only `LANG LC_*`). `MaxStartups` is raised
/// from the stock `10:30:100` (which drops 30% of unauthenticated connections beyond 10)
/// so that a test starting many workers at once is not flaky.
///
/// # Caveats
///
/// Drop kills the remote commands still running under the server (found by the tag),
/// then the server, reaps it, and removes the folder.
#[derive(Debug)]
pub(crate) struct Sshd {
    dir: PathBuf,
    port: u16,
    ssh: PathBuf,
    sshd: PathBuf,
    child: Option<Child>,
    tag: Tag,
}

impl Sshd {
    /// Starts the server, waits until each of [`HOSTS`] answers with an SSH banner, and
    /// logs in once (~0.5 s, the key exchange).
    ///
    /// # Errors
    ///
    /// The reason to skip: `sshd`, `ssh` or `ssh-keygen` missing, `/run/sshd` not
    /// creatable, the server not ready within 30 s, or the login refused (sshd's log is
    /// quoted; as a non-root user whose account is locked, sshd says so there).
    pub(crate) fn start() -> Result<Sshd, String> {
        let sshd = find_program("sshd").ok_or(
            "sshd not found (Debian: openssh-server; `cargo xtask setup` installs it as root)",
        )?;
        let ssh = find_program("ssh").ok_or("ssh not found (Debian: openssh-client)")?;
        let keygen =
            find_program("ssh-keygen").ok_or("ssh-keygen not found (Debian: openssh-client)")?;
        // sshd refuses to start without its privilege-separation folder (sshd(8), FILES).
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            std::fs::create_dir_all(privsep)
                .map_err(|e| format!("cannot create {}: {e}", privsep.display()))?;
        }
        // The port is free when chosen and taken by sshd a moment later; another process
        // may take it between, so a failed start is tried again on a new port.
        let mut last = String::new();
        for _ in 0..3 {
            match Sshd::try_start(&sshd, &ssh, &keygen) {
                Ok(server) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(sshd: &Path, ssh: &Path, keygen: &Path) -> Result<Sshd, String> {
        let dir = private_dir("sshd")?;
        let tag = Tag::new("PTOOLS_TEST_SSHD", &dir);
        // From here on, drop cleans up whatever goes wrong.
        let mut server = Sshd {
            port: free_port()?,
            ssh: ssh.to_path_buf(),
            sshd: sshd.to_path_buf(),
            child: None,
            tag,
            dir,
        };
        let d = server.dir.clone();
        for key in ["host_key", "user_key"] {
            let mut cmd = Command::new(keygen);
            cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", "ptools-test", "-f"])
                .arg(d.join(key));
            let out = run(&mut cmd, None, COMMAND_DEADLINE)?;
            if !out.status.success() {
                return Err(format!("ssh-keygen failed: {}", text(&out.stderr)));
            }
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys"))
            .map_err(|e| format!("writing authorized_keys: {e}"))?;
        let port = server.port;
        let listen: String = HOSTS
            .iter()
            .map(|h| format!("ListenAddress {h}:{port}\n"))
            .collect();
        write_file(
            &d.join("sshd_config"),
            &format!(
                "{listen}\
                 HostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 PidFile {dir}/sshd.pid\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 PermitUserEnvironment no\n\
                 AcceptEnv {var}\n\
                 MaxStartups 100\n\
                 MaxSessions 100\n\
                 X11Forwarding no\n\
                 PrintMotd no\n",
                dir = d.display(),
                var = server.tag.var,
            ),
        )?;
        let hosts = HOSTS.join(" ");
        write_file(
            &d.join("ssh_config"),
            &format!(
                "Host {hosts}\n  \
                 Port {port}\n  \
                 IdentityFile {dir}/user_key\n  \
                 IdentitiesOnly yes\n  \
                 User {user}\n  \
                 StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  \
                 GlobalKnownHostsFile /dev/null\n  \
                 BatchMode yes\n  \
                 LogLevel ERROR\n  \
                 ConnectTimeout 10\n  \
                 SetEnv {var}={value}\n",
                dir = d.display(),
                user = user_name(),
                var = server.tag.var,
                value = server.tag.dir.display(),
            ),
        )?;
        let log = std::fs::File::create(d.join("sshd.log"))
            .map_err(|e| format!("creating sshd.log: {e}"))?;
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .env(server.tag.var, &server.tag.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sshd.display()))?;
        server.child = Some(child);
        server.wait_ready()?;
        server.check_login()?;
        Ok(server)
    }

    /// Logs in once: a server that runs but refuses the login (a locked account, say)
    /// is a reason to skip, found here rather than as a failure in every test.
    fn check_login(&self) -> Result<(), String> {
        let out = run(self.ssh(HOSTS[0]).arg("true"), None, COMMAND_DEADLINE)?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "sshd runs, but ssh cannot log in as {} ({}): {}",
            user_name(),
            text(&out.stderr).trim(),
            self.log()
        ))
    }

    /// Waits until sshd answers on every address with its banner (`SSH-2.0-...`), which
    /// proves it accepted and served the connection, not only that the port is bound.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut pending: Vec<&str> = HOSTS.to_vec();
        while !pending.is_empty() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("sshd exited with {status}: {}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "sshd not answering on {} after {} s: {}",
                    pending.join(", "),
                    START_DEADLINE.as_secs(),
                    self.log()
                ));
            }
            pending.retain(|host| !answers_ssh(host, self.port));
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The options that make `ssh` reach this server: `["-F", "<dir>/ssh_config"]`, to go
    /// before the host name (`ssh <options> 127.0.0.2 <command>`).
    ///
    /// The file has one `Host 127.0.0.1 127.0.0.2 127.0.0.3` block: `Port`, the user key
    /// (`IdentityFile`, `IdentitiesOnly yes`), `User` (the current user; root in CI),
    /// `StrictHostKeyChecking no` with `UserKnownHostsFile /dev/null` (a fresh host key
    /// every run), `BatchMode yes` (never a prompt: a failure is an error at once),
    /// `LogLevel ERROR` (no "Permanently added" on stderr), `ConnectTimeout 10`, and the
    /// cleanup tag (`SetEnv`). With `-F`, ssh reads neither `~/.ssh/config` nor
    /// `/etc/ssh/ssh_config`, so the machine's own settings do not leak in.
    pub(crate) fn client_options(&self) -> Vec<String> {
        vec![
            "-F".to_owned(),
            self.dir.join("ssh_config").to_string_lossy().into_owned(),
        ]
    }

    /// `ssh <client_options> <host>`, ready for the remote command as more arguments.
    pub(crate) fn ssh(&self, host: &str) -> Command {
        let mut cmd = Command::new(&self.ssh);
        cmd.args(self.client_options()).arg(host);
        cmd
    }

    /// The `ssh` program the options are for (an absolute path).
    pub(crate) fn ssh_program(&self) -> &Path {
        &self.ssh
    }

    /// Options that make Open MPI's `mpirun` start its daemons on other hosts through this
    /// server: `--mca plm_rsh_agent "<ssh> -F <dir>/ssh_config"`. Use with
    /// `--host 127.0.0.2:N,127.0.0.3:M` (`host:slots`).
    ///
    /// Open MPI takes 127.0.0.1 for this host and starts its ranks directly; 127.0.0.2 and
    /// 127.0.0.3 count as other hosts, reached with the agent, where `orted` runs in an
    /// ssh session and starts the ranks. Those ranks see the session's environment plus
    /// every `OMPI_*` variable of mpirun's and those named with `-x VAR`, not the rest of
    /// mpirun's environment (mpirun(1), "Exported Environment Variables"; checked here).
    /// The agent string is split at spaces, so the temporary folder must have none.
    pub(crate) fn mpirun_options(&self) -> Vec<String> {
        vec![
            "--mca".to_owned(),
            "plm_rsh_agent".to_owned(),
            format!(
                "{} -F {}",
                self.ssh.display(),
                self.dir.join("ssh_config").display()
            ),
        ]
    }

    /// The port sshd listens on, on each of [`HOSTS`].
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The server's private folder (keys, configs, log).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The listening sshd's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last lines of sshd's log, for failure messages.
    pub(crate) fn log(&self) -> String {
        tail_of(&self.dir.join("sshd.log"), 20)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions first: killing the server's connection processes before the commands
        // they started would leave those commands running, orphaned.
        let sshd = self.sshd.clone();
        self.tag
            .kill_all(|_, exe| exe != sshd.as_path(), STOP_DEADLINE);
        if let Some(child) = self.child.take() {
            stop(child, "sshd");
        }
        // Connection processes whose client has gone are on their way out already.
        self.tag.kill_all(|_, _| true, STOP_DEADLINE);
        // Failing to remove the folder only leaves a few small files in the temp dir.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `host:port` accepts a TCP connection and sends an SSH banner.
fn answers_ssh(host: &str, port: u16) -> bool {
    let Ok(ip) = host.parse::<Ipv4Addr>() else {
        return false;
    };
    let addr = SocketAddrV4::new(ip, port).into();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 4];
    stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
}

// ---------------------------------------------------------------------------------------
// mpirun

/// The `mpirun` prefix that works on this machine, ready for `-np N <program>`: Open MPI's
/// `mpirun` by absolute path, then
///
/// - `--allow-run-as-root`: Open MPI refuses to start as root without it (or without both
///   `OMPI_ALLOW_RUN_AS_ROOT=1` and `OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`); mpirun(1),
///   "Running as root". Harmless for other users.
/// - `--oversubscribe`: by default a host has as many slots as cores (2 here), and
///   `-np 3` fails with "There are not enough slots available"; mpirun(1),
///   `--oversubscribe`.
/// - `--mca oob_tcp_if_include lo` and `--mca btl_tcp_if_include lo`: otherwise mpirun's
///   own channel to its ranks (and MPI traffic, for programs that use it) is offered on
///   every interface, the machine's non-loopback address included (seen here:
///   `OMPI_MCA_orte_hnp_uri=...;tcp://<eth0 address>:...`); with them it is
///   `tcp://127.0.0.1:...` only. mpirun(1), "Setting MCA Parameters". mpirun and orted
///   still listen on the wildcard address (`ss -ltn`), but offer and use only loopback.
///
/// It is checked by running `<prefix> -np 1 true` once per test process.
///
/// # What a rank sees (Open MPI 4.1.4, Debian 12; checked here)
///
/// - `OMPI_COMM_WORLD_RANK` (0..N), `OMPI_COMM_WORLD_SIZE` (N), `OMPI_COMM_WORLD_LOCAL_RANK`
///   and `OMPI_COMM_WORLD_LOCAL_SIZE` (per host), `OMPI_UNIVERSE_SIZE`; the PMIx server's
///   `PMIX_RANK` (equal to the world rank) and `PMIX_NAMESPACE`, but no `PMIX_SIZE`.
/// - No `PMI_RANK`/`PMI_SIZE`: those are MPICH's (Hydra's) and Slurm's `--mpi=pmi2`;
///   MPICH is not installed here, so that half is not checked. A launcher that must work
///   under both reads `OMPI_COMM_WORLD_*` first, then `PMI_*`, then `PMIX_RANK`.
/// - Ranks on this host inherit all of mpirun's environment; ranks on other hosts get
///   only `OMPI_*` and `-x VAR` ones (see [`Sshd::mpirun_options`]).
/// - Stdin: rank 0's is mpirun's stdin (a pipe), every other rank's is `/dev/null`
///   (mpirun(1), `--stdin <rank>`, default 0, and "Standard I/O"). `--stdin none` gives
///   rank 0 `/dev/null` too. `--stdin all` is not in this version's manual; tried, the
///   ranks read nothing and mpirun did not exit until killed. So a per-job secret on
///   stdin reaches rank 0 only, which must pass it on.
/// - Stdout and stderr of every rank come back on mpirun's, line by line, interleaved.
///
/// # Errors
///
/// The reason to skip: no `mpirun`, an `mpirun` that is not Open MPI's (MPICH's takes
/// other options), or the probe failing (its output is quoted).
pub(crate) fn mpirun_command() -> Result<Vec<String>, String> {
    static PROBED: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    PROBED.get_or_init(probe_mpirun).clone()
}

fn probe_mpirun() -> Result<Vec<String>, String> {
    let mpirun = find_program("mpirun")
        .ok_or("mpirun not found (Debian: openmpi-bin; `cargo xtask setup` installs it)")?;
    let out = run(
        Command::new(&mpirun).arg("--version"),
        None,
        COMMAND_DEADLINE,
    )?;
    let version = text(&out.stdout);
    if !version.contains("Open MPI") {
        return Err(format!(
            "{} is not Open MPI's mpirun (`--version` says {:?}); only Open MPI's options \
             are known here",
            mpirun.display(),
            version.lines().next().unwrap_or("")
        ));
    }
    let prefix: Vec<String> = [
        mpirun.to_string_lossy().as_ref(),
        "--allow-run-as-root",
        "--oversubscribe",
        "--mca",
        "oob_tcp_if_include",
        "lo",
        "--mca",
        "btl_tcp_if_include",
        "lo",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut probe = Command::new(&prefix[0]);
    probe.args(&prefix[1..]).args(["-np", "1", "true"]);
    let out = run(&mut probe, None, COMMAND_DEADLINE)?;
    if !out.status.success() {
        return Err(format!(
            "`{} -np 1 true` failed with {}: {}",
            prefix.join(" "),
            out.status,
            text(&out.stderr)
        ));
    }
    Ok(prefix)
}

// ---------------------------------------------------------------------------------------
// Slurm

/// A private Slurm cluster of three nodes, `node1`-`node3` at 127.0.0.1-3, with 8 CPUs
/// each: a `munged`, a `slurmctld` and three `slurmd` (one per node, `slurmd -N nodeK`),
/// all children of the test, configured in a folder of their own.
///
/// # Why it works in a container
///
/// Checked on Debian 12 (Slurm 22.05.8) as root, without systemd or cgroups:
/// `ProctrackType=proctrack/pgid` and `TaskPlugin=task/none` need no cgroups;
/// `SlurmdParameters=config_overrides` lets the nodes claim 8 CPUs on a 2-core machine,
/// so `srun -n 5` needs no `--overcommit`; each node has its own `Port` and `%n` spool
/// folder, which is how several slurmd share one host; `munged --force` runs as root on
/// a private socket and key (`AuthInfo=socket=...`). Ready (three nodes idle) in ~1.2 s.
///
/// Every address in the configuration is on loopback, so all traffic stays there.
/// `CommunicationParameters=NoCtldInAddrAny` makes slurmctld listen on 127.0.0.1 alone;
/// slurmd and srun still listen on every interface, because `NoInAddrAny` binds each
/// slurmd to the address of the host name, 127.0.0.1 for all three nodes, and then node2
/// and node3 cannot be reached at 127.0.0.2-3 (tried: "Communication connection failure").
///
/// # What a task sees (checked here)
///
/// - `SLURM_PROCID` (0..N), `SLURM_NTASKS` (N), `SLURM_LOCALID`, `SLURM_NODEID`,
///   `SLURMD_NODENAME` (`node1`...), `SLURM_STEP_NODELIST`; srun(1), "OUTPUT ENVIRONMENT
///   VARIABLES".
/// - `PMI_RANK`/`PMI_SIZE` only with `srun --mpi=pmi2`; none with the default
///   (`MpiDefault=none`). `--mpi=pmix` fails: Debian's slurmd lacks the PMIx library.
/// - Stdin: by default srun broadcasts its stdin to every task (srun(1), `--input`, "IO
///   Redirection"); `--input=0` sends it to task 0 only, the others get none.
/// - The environment of srun, whole (`--export=ALL` is the default).
///
/// # Caveats
///
/// Drop kills the tasks and step daemons still running (found by the tag, and slurmstepd
/// by slurmd's log, which it keeps open), then slurmd, slurmctld and munged, reaps them,
/// and removes the folder. Stopping slurmd under a running step without killing the step
/// daemon first leaves slurmstepd behind, retrying to report the step's end forever (seen
/// when a launcher test dropped the cluster with its workers still running).
#[derive(Debug)]
pub(crate) struct Slurm {
    dir: PathBuf,
    /// munged first, then slurmctld, then the slurmd: drop stops them in reverse.
    children: Vec<(String, Child)>,
    tag: Tag,
}

impl Slurm {
    /// The nodes, in the order of [`HOSTS`].
    pub(crate) const NODES: [&'static str; 3] = ["node1", "node2", "node3"];

    /// Starts the cluster and waits until its three nodes are idle.
    ///
    /// # Errors
    ///
    /// The reason to skip: a Slurm or munge program missing, or the cluster not idle
    /// within 30 s (the daemons' logs are quoted).
    pub(crate) fn start() -> Result<Slurm, String> {
        for program in ["munged", "slurmctld", "slurmd", "srun", "sinfo"] {
            if find_program(program).is_none() {
                return Err(format!(
                    "{program} not found (Debian: slurm-wlm; `cargo xtask setup` installs it \
                     as root)"
                ));
            }
        }
        let mut last = String::new();
        for _ in 0..2 {
            match Slurm::try_start() {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start() -> Result<Slurm, String> {
        if user_name() != "root" {
            // slurmctld refuses a SlurmUser other than the one it runs as, and slurmd must
            // be root to start tasks as the submitting user.
            return Err("the private Slurm cluster needs root (SlurmUser=root)".to_owned());
        }
        let dir = private_dir("slurm")?;
        let mut cluster = Slurm {
            tag: Tag::new("PTOOLS_TEST_SLURM", &dir),
            children: Vec::new(),
            dir,
        };
        let d = cluster.dir.clone();
        std::fs::create_dir_all(d.join("state")).map_err(|e| format!("state folder: {e}"))?;
        let mut key = vec![0u8; 128];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|e| format!("reading /dev/urandom: {e}"))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d.join("munge.key"))
            .and_then(|mut f| f.write_all(&key))
            .map_err(|e| format!("writing munge.key: {e}"))?;

        let ports = free_ports(1 + Slurm::NODES.len())?;
        let host = short_hostname();
        let nodes: String = Slurm::NODES
            .iter()
            .zip(HOSTS)
            .zip(&ports[1..])
            .map(|((node, addr), port)| {
                format!(
                    "NodeName={node} NodeAddr={addr} NodeHostname={host} Port={port} CPUs=8 \
                     State=UNKNOWN\n"
                )
            })
            .collect();
        write_file(
            &d.join("slurm.conf"),
            &format!(
                "ClusterName=ptools\n\
                 SlurmctldHost={host}(127.0.0.1)\n\
                 SlurmctldPort={ctld}\n\
                 SlurmUser=root\n\
                 SlurmdUser=root\n\
                 AuthType=auth/munge\n\
                 CredType=cred/munge\n\
                 AuthInfo=socket={dir}/munge.sock\n\
                 StateSaveLocation={dir}/state\n\
                 SlurmdSpoolDir={dir}/spool-%n\n\
                 SlurmctldPidFile={dir}/slurmctld.pid\n\
                 SlurmdPidFile={dir}/slurmd-%n.pid\n\
                 SlurmctldLogFile={dir}/slurmctld.log\n\
                 SlurmdLogFile={dir}/slurmd-%n.log\n\
                 SlurmdParameters=config_overrides\n\
                 CommunicationParameters=NoCtldInAddrAny\n\
                 ProctrackType=proctrack/pgid\n\
                 TaskPlugin=task/none\n\
                 SelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core\n\
                 ReturnToService=2\n\
                 MpiDefault=none\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\n\
                 {nodes}\
                 PartitionName=ptools Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP\n",
                ctld = ports[0],
                dir = d.display(),
            ),
        )?;

        let mut munged = Command::new(find_program("munged").unwrap_or_default());
        munged
            .args(["-F", "--force"])
            .arg(format!("--socket={}", d.join("munge.sock").display()))
            .arg(format!("--key-file={}", d.join("munge.key").display()))
            .arg(format!("--pid-file={}", d.join("munged.pid").display()))
            .arg(format!("--log-file={}", d.join("munged.log").display()))
            .arg(format!("--seed-file={}", d.join("munged.seed").display()));
        cluster.spawn("munged", &mut munged)?;
        let deadline = Instant::now() + START_DEADLINE;
        while !d.join("munge.sock").exists() {
            cluster.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!("munged made no socket: {}", cluster.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let conf = d.join("slurm.conf");
        let mut ctld = Command::new(find_program("slurmctld").unwrap_or_default());
        ctld.args(["-D", "-i", "-f"]).arg(&conf);
        cluster.spawn("slurmctld", &mut ctld)?;
        for node in Slurm::NODES {
            let mut slurmd = Command::new(find_program("slurmd").unwrap_or_default());
            slurmd.args(["-D", "-N", node, "-f"]).arg(&conf);
            cluster.spawn(&format!("slurmd {node}"), &mut slurmd)?;
        }
        cluster.wait_idle(deadline)?;
        Ok(cluster)
    }

    /// Starts a daemon with the cluster's environment, output into `<dir>/<name>.out`.
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<(), String> {
        let file = self.dir.join(format!("{}.out", name.replace(' ', "-")));
        let out = std::fs::File::create(&file).map_err(|e| format!("{name} output: {e}"))?;
        self.environment(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), String> {
        let exited = self
            .children
            .iter_mut()
            .find_map(|(name, child)| Some((name.clone(), child.try_wait().ok()??)));
        match exited {
            Some((name, status)) => Err(format!("{name} exited with {status}: {}", self.log())),
            None => Ok(()),
        }
    }

    fn wait_idle(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            self.check_alive()?;
            let out = run(
                self.command("sinfo").args(["-h", "-N", "-o", "%N %T"]),
                None,
                COMMAND_DEADLINE,
            )?;
            let last = text(&out.stdout) + &text(&out.stderr);
            let idle = last
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("idle"))
                .count();
            if idle == Slurm::NODES.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the nodes were not idle after {} s (sinfo: {last:?}): {}",
                    START_DEADLINE.as_secs(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A Slurm client (`srun`, `sinfo`, `sbatch`, ...) aimed at this cluster: `SLURM_CONF`
    /// set, every inherited `SLURM_*`, `SRUN_*`, `SALLOC_*` and `SBATCH_*` variable
    /// removed (inside a real job they would point srun at that job), and the cleanup
    /// tag, which srun passes on to the tasks.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(find_program(program).unwrap_or_else(|| program.into()));
        self.environment(&mut cmd);
        cmd
    }

    fn environment(&self, cmd: &mut Command) {
        for (var, _) in std::env::vars_os() {
            let v = var.to_string_lossy();
            if ["SLURM_", "SRUN_", "SALLOC_", "SBATCH_"]
                .iter()
                .any(|p| v.starts_with(p))
            {
                cmd.env_remove(&var);
            }
        }
        cmd.env("SLURM_CONF", self.dir.join("slurm.conf"))
            .env(self.tag.var, &self.tag.dir);
    }

    /// The cluster's `slurm.conf`, for programs that take `SLURM_CONF` from elsewhere.
    pub(crate) fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// The cluster's private folder (configuration, state, spools, logs).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemons' process ids: munged, slurmctld, then each slurmd.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(_, c)| c.id()).collect()
    }

    /// The last lines of each daemon's log, for failure messages.
    pub(crate) fn log(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log" || e == "out"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                format!("\n--- {name}\n{}", tail_of(f, 8))
            })
            .collect()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Tasks and step daemons first, sparing our own children (the daemons), which are
        // stopped in order so that each can still talk to the ones below it.
        let ours: Vec<i32> = self.children.iter().map(|(_, c)| c.id() as i32).collect();
        self.tag
            .kill_all(|pid, _| !ours.contains(&pid), STOP_DEADLINE);
        while let Some((name, child)) = self.children.pop() {
            stop(child, &name);
        }
        // What the daemons leave (slurmctld's slurmscriptd, a late slurmstepd).
        self.tag.kill_all(|_, _| true, STOP_DEADLINE);
        // Failing to remove the folder only leaves small files in the temp dir.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Running commands

/// Runs `cmd` with `stdin` (or `/dev/null`), collecting its output, for at most `timeout`.
/// The command runs in a process group of its own and with a tag of its own; on timeout
/// both are killed (what it started included) and the error says what it had printed.
///
/// # Errors
///
/// The command cannot be started, or it ran out of time.
pub(crate) fn run(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    // A folder name that is never created: only the environment can match it.
    let tag = Tag::new(
        "PTOOLS_TEST_RUN",
        &std::env::temp_dir().join(unique_name("run")),
    );
    cmd.env(tag.var, &tag.dir)
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        // A writer thread, so that a command that reads slowly (or not at all) cannot
        // block us while it fills its output pipes. Its end closes the pipe: EOF.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    for (which, pipe) in [
        (
            0,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            1,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            let _ = tx.send((which, buf));
        });
    }
    let status = wait_deadline(&mut child, timeout);
    if status.is_none() {
        let pgid = child.id() as libc::pid_t;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the group is
        // the one this child leads, and the child is not reaped yet, so its id is not
        // reused.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        tag.kill_all(|_, _| true, STOP_DEADLINE);
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close when the command and all it started are gone; one that leaves a
    // process holding them open gets a second and is reported with what it printed.
    let mut out = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok((which, buf)) => out[which] = buf,
            Err(_) => break,
        }
    }
    let [stdout, stderr] = out;
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{shown} was killed after {} s; stdout: {:?}; stderr: {:?}",
            timeout.as_secs_f64(),
            text(&stdout),
            text(&stderr)
        )),
    }
}

/// Waits for `child` until `timeout`; `None` if it is still running then.
pub(crate) fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// Stops a daemon of ours: SIGTERM, then SIGKILL after [`STOP_DEADLINE`]; always reaped.
fn stop(mut child: Child, name: &str) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the child is not
    // reaped yet, so its id still names it.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    if wait_deadline(&mut child, STOP_DEADLINE).is_none() {
        let _ = child.kill();
        // SIGKILL cannot be caught; the wait returns at once.
        let reaped = child.wait();
        debug_assert!(reaped.is_ok(), "{name} could not be reaped: {reaped:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Tags

/// An environment variable whose value is unique to one instance (its folder), inherited
/// by every process it starts: how drop finds processes that are not its children.
#[derive(Debug)]
struct Tag {
    var: &'static str,
    dir: PathBuf,
}

impl Tag {
    fn new(var: &'static str, dir: &Path) -> Tag {
        Tag {
            var,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGKILLs every process of [`processes_of`] the folder that `select` (given pid and
    /// executable) picks, until none is left or `timeout` passes. A pid read from /proc may
    /// have exited and been reused by the time it is signalled; with the few processes a
    /// test makes, that is left to chance.
    fn kill_all(&self, select: impl Fn(i32, &Path) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<i32> = processes_of(&self.dir, Some(self.var))
                .into_iter()
                .filter(|(pid, exe)| select(*pid, exe))
                .map(|(pid, _)| pid)
                .collect();
            if found.is_empty() || Instant::now() >= deadline {
                return;
            }
            for pid in found {
                // SAFETY: kill(2) takes plain integers and touches no memory of ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The live processes (other than this one) tied to an instance's folder `dir`, with their
/// executables: those whose environment has `<var>=<dir>` (any `PTOOLS_TEST_*` variable
/// when `var` is `None`), and those with a file under `dir` open or as their working
/// folder. The second catches what rewrites its environment: slurmstepd overwrites its
/// own with its process title, but keeps slurmd's log (in `dir`) open. A zombie reads as
/// having neither, so the dead do not count; a file removed since still names its old
/// path (with " (deleted)" after it), so this works after the folder is gone too.
pub(crate) fn processes_of(dir: &Path, var: Option<&str>) -> Vec<(i32, PathBuf)> {
    let value = dir.to_string_lossy();
    let tagged = |kv: &[u8]| {
        let kv = String::from_utf8_lossy(kv);
        match var {
            Some(var) => kv.strip_prefix(var).and_then(|r| r.strip_prefix('=')) == Some(&value),
            None => {
                kv.starts_with("PTOOLS_TEST_")
                    && kv.split_once('=').is_some_and(|(_, v)| v == value)
            }
        }
    };
    let holds = |pid: i32| {
        let under = |link: &str| {
            std::fs::read_link(format!("/proc/{pid}/{link}")).is_ok_and(|p| p.starts_with(dir))
        };
        under("cwd")
            || std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p.starts_with(dir)))
            })
    };
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(tagged))
                || holds(pid)
        })
        .map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            (pid, exe)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Small helpers

/// `program` on `PATH`, or in the sbin folders (daemons live there, and a non-root `PATH`
/// often lacks them).
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `<prefix>-<pid>-<n>`, unique within this machine's running processes.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("ptools-{prefix}-{}-{n}", std::process::id())
}

/// A new folder `$TMPDIR/ptools-<kind>-<pid>-<n>`, readable by us alone. One left by an
/// earlier process with the same pid is removed first.
fn private_dir(kind: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(unique_name(kind));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A port free on each of [`HOSTS`]: bound there as port 0 by the kernel's choice, checked
/// on the other addresses, then released for the daemon to take.
fn free_port() -> Result<u16, String> {
    Ok(free_ports(1)?[0])
}

/// `n` different free ports, as [`free_port`]; all are held until all are chosen.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut held: Vec<TcpListener> = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..n * 20 {
        if ports.len() == n {
            break;
        }
        let first =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
        let port = first.local_addr().map_err(|e| e.to_string())?.port();
        let others: Result<Vec<TcpListener>, _> = HOSTS[1..]
            .iter()
            .map(|h| {
                TcpListener::bind((h.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::LOCALHOST), port))
            })
            .collect();
        if let Ok(others) = others {
            ports.push(port);
            held.extend(others);
        }
        held.push(first);
    }
    if ports.len() == n {
        Ok(ports)
    } else {
        Err(format!("found only {} free ports of {n}", ports.len()))
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Output bytes as text, for messages and comparisons.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The user ssh logs in as: this one (root in CI), as `id -un` says.
fn user_name() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_owned())
}

/// This machine's name up to the first dot, as slurmctld compares it with `SlurmctldHost`.
pub(crate) fn short_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    let short = name.split('.').next().unwrap_or("");
    if short.is_empty() {
        "localhost".to_owned()
    } else {
        short.to_owned()
    }
}
