//! Children never outlive a killed parent: the kernel kills them (`PR_SET_PDEATHSIG`).
//!
//! This binary makes itself a child subreaper, so the orphaned children are re-parented to
//! it, and it reaps them itself: nothing is left behind even if the test fails.

mod common;

use std::io::Read;
use std::time::Duration;

use ptools_fork::Pfork;

fn main() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an int flag; the other arguments are unused.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl: {}", std::io::Error::last_os_error());
    common::run(&[(
        "children_die_with_a_killed_parent",
        children_die_with_a_killed_parent,
    )]);
}

fn children_die_with_a_killed_parent() {
    const N: usize = 3;
    let (mut r, w) = common::pipe();
    // The helper is the pfork parent; its children report their pids, then block forever.
    let helper = common::fork_helper(|| {
        let outcomes = Pfork::new().run(N, |_| -> u8 {
            use std::io::Write;
            (&w).write_all(&(std::process::id() as i32).to_le_bytes())
                .unwrap();
            common::sleep_forever()
        });
        // Never reached: the helper is killed while its children block.
        i32::from(outcomes.is_err())
    });
    drop(w);
    let mut pids = [0u8; 4 * N];
    // Blocking read: the children write at once; the SIGALRM watchdog bounds it if not.
    r.read_exact(&mut pids).unwrap();
    let pids: Vec<libc::pid_t> = pids
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();

    // SAFETY: kill takes no pointers; `helper` is our own unreaped child.
    assert_eq!(unsafe { libc::kill(helper, libc::SIGKILL) }, 0);
    let status = common::wait_timeout(helper, Duration::from_secs(60)).expect("helper not reaped");
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);

    // The orphans are now ours (subreaper). They must have been killed by the kernel: each
    // ends with SIGKILL without anyone here sending it. The wait has a timeout, after which
    // wait_timeout kills and reaps a survivor itself and the test fails.
    for pid in pids {
        let status = common::wait_timeout(pid, Duration::from_secs(60));
        let status = status.unwrap_or_else(|| panic!("child {pid} outlived its parent"));
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "{status:#x}"
        );
    }
}
