//! A program started as the ranks of `mpirun` (or the tasks of `srun`): rank 0 is the
//! master, every other rank its worker.
//!
//! The ranks meet through a rendezvous file: rank 0 starts listening, then writes its
//! address and the job's secret to `<dir>/.ptools-rendezvous-<job>` (mode 0600, written
//! whole then renamed into place); every other rank waits for the file, reads it, and joins
//! over TCP like a launched worker. `<dir>` is `PTOOLS_RENDEZVOUS_DIR` or the working
//! directory, which must be shared by the ranks' hosts (it is on one host, and on the
//! shared file systems of most clusters); `<job>` is the MPI or Slurm job's own id, so
//! two jobs never meet. Rank 0 removes the file once every rank has joined, or failed to.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::auth::Secret;

/// The rendezvous directory, when not the working directory.
pub(crate) const ENV_DIR: &str = "PTOOLS_RENDEZVOUS_DIR";

/// This process's rank and the number of ranks, from the environment its launcher set:
/// Open MPI, MPICH/PMI, Slurm, PMIx (in that order).
pub(crate) fn rank_and_size() -> Option<(usize, usize)> {
    let get = |k: &str| std::env::var(k).ok()?.trim().parse::<usize>().ok();
    [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
    ]
    .iter()
    .find_map(|(r, n)| Some((get(r)?, get(n)?)))
    .filter(|(r, n)| r < n)
}

/// The job's id, the same in every rank and different for every job.
fn job_key() -> Option<String> {
    let slurm = || {
        Some(format!(
            "{}.{}",
            std::env::var("SLURM_JOB_ID").ok()?,
            std::env::var("SLURM_STEP_ID").unwrap_or_default()
        ))
    };
    let key = std::env::var("PMIX_NAMESPACE")
        .or_else(|_| std::env::var("OMPI_MCA_ess_base_jobid"))
        .or_else(|_| std::env::var("OMPI_MCA_orte_ess_jobid"))
        .or_else(|_| std::env::var("PMI_KVSNAME"))
        .ok()
        .or_else(slurm)?;
    Some(
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect(),
    )
}

/// Where this job's rendezvous file is.
pub(crate) fn rendezvous_path() -> io::Result<PathBuf> {
    let key = job_key().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no MPI or Slurm job id in the environment (PMIX_NAMESPACE, \
             OMPI_MCA_ess_base_jobid, PMI_KVSNAME, SLURM_JOB_ID)",
        )
    })?;
    let dir = match std::env::var_os(ENV_DIR) {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir()?,
    };
    Ok(dir.join(format!(".ptools-rendezvous-{key}")))
}

/// Rank 0: writes `config` (a `PTOOLS_WORKER_TCP` value) and the secret, readable by this
/// user only, atomically.
pub(crate) fn publish(path: &std::path::Path, config: &str, secret: &Secret) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let r = f
        .write_all(format!("{config}\n{}\n", secret.to_hex()).as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Another rank: waits for the file until `deadline`, then reads the configuration and
/// the secret.
pub(crate) fn read(path: &std::path::Path, deadline: Instant) -> Result<(String, Secret), String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    loop {
        match super::open_private(path) {
            Ok(f) => {
                let m = f.metadata().map_err(|e| e.to_string())?;
                if !m.is_file()
                    || m.mode() & 0o077 != 0
                    || m.uid() != nix::unistd::getuid().as_raw()
                {
                    return Err(format!(
                        "{}: not a private file of this user; refusing it",
                        path.display()
                    ));
                }
                let mut text = String::new();
                f.take(4096)
                    .read_to_string(&mut text)
                    .map_err(|e| e.to_string())?;
                let mut lines = text.lines();
                let (Some(config), Some(secret)) = (lines.next(), lines.next()) else {
                    return Err(format!("{}: malformed", path.display()));
                };
                let secret = Secret::from_hex(secret)
                    .ok_or_else(|| format!("{}: malformed secret", path.display()))?;
                return Ok((config.to_owned(), secret));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if Instant::now() >= deadline {
                    return Err(format!("rank 0 did not publish {} in time", path.display()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}
