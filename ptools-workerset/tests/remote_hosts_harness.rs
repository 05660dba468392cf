//! The remote-host harness itself (`support/remote_hosts.rs`): the loopback sshd lets ssh
//! run commands as three hosts and carries a secret on stdin intact, `mpirun` starts ranks
//! here and, through the sshd, on the other two addresses, a private Slurm cluster runs
//! `srun` on three nodes, and each leaves no process behind. The launchers' tests stand on
//! these facts. A test whose programs are missing prints `SKIPPED: <test>: <reason>`.

#[path = "support/remote_hosts.rs"]
mod remote_hosts;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remote_hosts::{
    HOSTS, Slurm, Sshd, Tool, mpirun_command, processes_of, run, skip, text, wait_deadline,
};

/// Every command here takes a second or so; this only bounds a hang.
const DEADLINE: Duration = Duration::from_secs(60);

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat[stat.rfind(')').map_or(0, |i| i + 2)..].chars().next();
    !matches!(state, Some('Z' | 'X') | None)
}

/// Runs `cmd` and returns its stdout, failing the test on a non-zero exit.
fn stdout_of(cmd: &mut Command, stdin: Option<&[u8]>) -> String {
    let out = run(cmd, stdin, DEADLINE).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(|l| l.trim_end().to_owned()).collect();
    v.sort();
    v
}

#[test]
fn ssh_runs_a_command_as_each_of_three_hosts() {
    const NAME: &str = "ssh_runs_a_command_as_each_of_three_hosts";
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => return skip(NAME, Tool::Ssh, &why),
    };
    let hostname = remote_hosts::short_hostname();
    // The three connections at once: each costs a key exchange (~0.5 s here).
    std::thread::scope(|s| {
        for host in HOSTS {
            let sshd = &sshd;
            let hostname = &hostname;
            s.spawn(move || {
                let out = stdout_of(
                    sshd.ssh(host)
                        .arg("echo ok; hostname; set -- $SSH_CONNECTION; echo $3"),
                    None,
                );
                let lines: Vec<&str> = out.lines().collect();
                assert_eq!(lines.len(), 3, "{host}: {out:?}; sshd log: {}", sshd.log());
                assert_eq!(lines[0], "ok", "{host}");
                assert_eq!(
                    lines[1].split('.').next(),
                    Some(hostname.as_str()),
                    "{host}"
                );
                // The server address tells the three apart: the hostname cannot.
                assert_eq!(lines[2], host, "{host}: SSH_CONNECTION's server address");
            });
        }
    });
}

#[test]
fn ssh_carries_a_secret_on_stdin_intact() {
    const NAME: &str = "ssh_carries_a_secret_on_stdin_intact";
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => return skip(NAME, Tool::Ssh, &why),
    };
    // Every byte value, NUL and newline included: no terminal, no line discipline, no
    // text conversion may touch it on the way.
    let secret: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    let mut cmd = sshd.ssh("127.0.0.2");
    cmd.arg(format!("head -c {}", secret.len()));
    let out = run(&mut cmd, Some(&secret), DEADLINE).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, secret, "the secret arrived changed");
}

#[test]
fn dropping_the_sshd_leaves_no_process() {
    const NAME: &str = "dropping_the_sshd_leaves_no_process";
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => return skip(NAME, Tool::Ssh, &why),
    };
    let listener = sshd.pid();
    let dir = sshd.dir().to_path_buf();
    // A remote command that outlives its session, as a worker whose master died would.
    let out = stdout_of(
        sshd.ssh("127.0.0.3")
            .arg("sleep 300 </dev/null >/dev/null 2>&1 & echo $!"),
        None,
    );
    let orphan: u32 = out.trim().parse().unwrap_or_else(|_| panic!("{out:?}"));
    assert!(alive(orphan) && alive(listener));
    drop(sshd);
    assert!(
        !alive(orphan),
        "the remote command {orphan} outlived the sshd"
    );
    assert!(!alive(listener), "sshd {listener} still runs");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn mpirun_starts_three_ranks() {
    const NAME: &str = "mpirun_starts_three_ranks";
    let mpirun = match mpirun_command() {
        Ok(m) => m,
        Err(why) => return skip(NAME, Tool::Mpirun, &why),
    };
    let mut cmd = Command::new(&mpirun[0]);
    cmd.args(&mpirun[1..])
        .args(["-np", "3", "sh", "-c", "echo $OMPI_COMM_WORLD_RANK"]);
    assert_eq!(sorted_lines(&stdout_of(&mut cmd, None)), ["0", "1", "2"]);
}

#[test]
fn mpirun_gives_stdin_to_rank_0_only() {
    const NAME: &str = "mpirun_gives_stdin_to_rank_0_only";
    let mpirun = match mpirun_command() {
        Ok(m) => m,
        Err(why) => return skip(NAME, Tool::Mpirun, &why),
    };
    let mut cmd = Command::new(&mpirun[0]);
    cmd.args(&mpirun[1..]).args([
        "-np",
        "3",
        "sh",
        "-c",
        "echo $OMPI_COMM_WORLD_RANK/$OMPI_COMM_WORLD_SIZE:$(head -c 6)",
    ]);
    assert_eq!(
        sorted_lines(&stdout_of(&mut cmd, Some(b"secret"))),
        ["0/3:secret", "1/3:", "2/3:"]
    );
}

#[test]
fn mpirun_reaches_the_other_hosts_through_the_sshd() {
    const NAME: &str = "mpirun_reaches_the_other_hosts_through_the_sshd";
    let mpirun = match mpirun_command() {
        Ok(m) => m,
        Err(why) => return skip(NAME, Tool::Mpirun, &why),
    };
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => return skip(NAME, Tool::Ssh, &why),
    };
    let mut cmd = Command::new(&mpirun[0]);
    cmd.args(&mpirun[1..])
        .args(sshd.mpirun_options())
        .args(["--host", "127.0.0.2:2,127.0.0.3:1", "-np", "3"])
        .args([
            "sh",
            "-c",
            "set -- $SSH_CONNECTION; echo $OMPI_COMM_WORLD_RANK $3",
        ]);
    let out = stdout_of(&mut cmd, None);
    // Slots fill host by host: ranks 0 and 1 on the first, 2 on the second.
    assert_eq!(
        sorted_lines(&out),
        ["0 127.0.0.2", "1 127.0.0.2", "2 127.0.0.3"],
        "sshd log: {}",
        sshd.log()
    );
}

#[test]
fn srun_starts_a_task_on_each_of_three_nodes() {
    const NAME: &str = "srun_starts_a_task_on_each_of_three_nodes";
    let slurm = match Slurm::start() {
        Ok(s) => s,
        Err(why) => return skip(NAME, Tool::Srun, &why),
    };
    let daemons = slurm.pids();
    let dir = slurm.dir().to_path_buf();
    let mut cmd = slurm.command("srun");
    cmd.args(["-N", "3", "-n", "3", "--input=0", "sh", "-c"])
        .arg("echo $SLURM_PROCID/$SLURM_NTASKS $SLURMD_NODENAME:$(head -c 6 2>/dev/null)");
    let out = run(&mut cmd, Some(b"secret"), DEADLINE).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "srun failed with {}: {}{}",
        out.status,
        text(&out.stderr),
        slurm.log()
    );
    assert_eq!(
        sorted_lines(&text(&out.stdout)),
        ["0/3 node1:secret", "1/3 node2:", "2/3 node3:"]
    );
    drop(slurm);
    let left: BTreeSet<u32> = daemons.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "Slurm daemons still running: {left:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn dropping_slurm_mid_step_leaves_no_process() {
    const NAME: &str = "dropping_slurm_mid_step_leaves_no_process";
    let slurm = match Slurm::start() {
        Ok(s) => s,
        Err(why) => return skip(NAME, Tool::Srun, &why),
    };
    let daemons = slurm.pids();
    let dir = slurm.dir().to_path_buf();
    // A step that would run for minutes, as workers do until told to stop.
    let mut srun = slurm
        .command("srun")
        .args(["-N", "3", "-n", "3", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srun");
    let deadline = Instant::now() + DEADLINE;
    let is = |exe: &std::path::Path, name: &str| {
        exe.file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with(name))
    };
    loop {
        let running = processes_of(&dir, None);
        let tasks = running.iter().filter(|(_, e)| is(e, "sleep")).count();
        let stepds = running.iter().filter(|(_, e)| is(e, "slurmstepd")).count();
        if tasks == 3 && stepds >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the step did not start: {running:?}{}",
            slurm.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(slurm);
    // srun bears the tag too, so drop killed it; it is ours to reap.
    assert!(
        wait_deadline(&mut srun, DEADLINE).is_some(),
        "srun still runs"
    );
    let left = processes_of(&dir, None);
    assert!(left.is_empty(), "left behind: {left:?}");
    let daemons: Vec<u32> = daemons.into_iter().filter(|p| alive(*p)).collect();
    assert!(
        daemons.is_empty(),
        "Slurm daemons still running: {daemons:?}"
    );
}
