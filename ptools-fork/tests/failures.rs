//! Every per-child failure, caused for real, with the other children's results kept: panics,
//! `abort`, signals, SIGKILL from outside, exit codes, missing, undecodable, unencodable and
//! oversized results, `fork` failing part way, and pfork inside a pfork child.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use ptools_fork::{ChildError, Pfork, PforkError, pfork};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn main() {
    common::run(&[
        (
            "panic_with_message_and_location",
            panic_with_message_and_location,
        ),
        (
            "panic_with_non_string_payload",
            panic_with_non_string_payload,
        ),
        (
            "panic_caught_inside_f_is_not_a_failure",
            panic_caught_inside_f_is_not_a_failure,
        ),
        ("huge_panic_message_is_cut", huge_panic_message_is_cut),
        ("abort_is_sigabrt", abort_is_sigabrt),
        ("signals_are_reported", signals_are_reported),
        ("sigkill_from_outside", sigkill_from_outside),
        ("non_zero_exit", non_zero_exit),
        ("exit_zero_without_result", exit_zero_without_result),
        ("undecodable_result", undecodable_result),
        ("unencodable_result", unencodable_result),
        ("panic_while_encoding", panic_while_encoding),
        ("result_over_the_cap", result_over_the_cap),
        ("fork_failing_part_way", fork_failing_part_way),
        (
            "sigchld_ignored_loses_only_exit_codes",
            sigchld_ignored_loses_only_exit_codes,
        ),
        (
            "grandchild_holding_the_pipe_does_not_block",
            grandchild_holding_the_pipe_does_not_block,
        ),
        ("nested_pfork_is_refused", nested_pfork_is_refused),
        ("nesting_allowed_one_level", nesting_allowed_one_level),
        (
            "pfork_error_display_and_outcomes",
            pfork_error_display_and_outcomes,
        ),
    ]);
}

/// Runs `n` children under a generous timeout (a liveness guard, not a timing check).
fn run<R, F>(n: usize, f: F) -> Vec<Result<R, ChildError>>
where
    F: Fn(usize) -> R,
    R: Serialize + serde::de::DeserializeOwned,
{
    Pfork::new()
        .timeout(Duration::from_secs(120))
        .run(n, f)
        .unwrap()
}

fn panic_with_message_and_location() {
    let outcomes = run(3, |i| {
        if i == 1 {
            panic!("child {i} failed on purpose");
        }
        i * 10
    });
    assert_eq!(outcomes[0], Ok(0));
    assert_eq!(outcomes[2], Ok(20));
    match &outcomes[1] {
        Err(ChildError::Panicked { message, location }) => {
            assert_eq!(message, "child 1 failed on purpose");
            let location = location.as_deref().unwrap();
            assert!(location.contains("failures.rs:"), "{location}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn panic_with_non_string_payload() {
    let outcomes = run(2, |i| {
        if i == 0 {
            std::panic::panic_any(42_u32);
        }
        i
    });
    assert!(
        matches!(&outcomes[0], Err(ChildError::Panicked { message, .. }) if message == "Box<dyn Any>")
    );
    assert_eq!(outcomes[1], Ok(1));
}

fn panic_caught_inside_f_is_not_a_failure() {
    let outcomes = run(2, |i| {
        std::panic::catch_unwind(|| panic!("inner {i}")).is_err()
    });
    assert_eq!(outcomes, vec![Ok(true), Ok(true)]);
}

fn huge_panic_message_is_cut() {
    // A 4 MiB message is over the parent's bound on reports: the child cuts it, so the
    // panic is still reported as a panic.
    let outcomes = run(2, |i| {
        if i == 1 {
            panic!("{}", "x".repeat(4 << 20));
        }
        i
    });
    assert_eq!(outcomes[0], Ok(0));
    match &outcomes[1] {
        Err(ChildError::Panicked { message, location }) => {
            assert!(message.len() <= 64 << 10, "{} bytes", message.len());
            assert!(message.starts_with("xxxx") && message.ends_with(" [...]"));
            assert!(location.is_some());
        }
        other => panic!("{other:?}"),
    }
}

fn abort_is_sigabrt() {
    let outcomes = run(3, |i| {
        if i == 2 {
            std::process::abort();
        }
        i
    });
    assert_eq!(outcomes[..2], [Ok(0), Ok(1)]);
    assert!(
        matches!(
            outcomes[2],
            Err(ChildError::Signaled {
                signal: libc::SIGABRT,
                ..
            })
        ),
        "{:?}",
        outcomes[2]
    );
}

fn signals_are_reported() {
    let signals = [libc::SIGTERM, libc::SIGSEGV, libc::SIGBUS, libc::SIGUSR1];
    let outcomes = run(signals.len() + 1, |i| {
        if let Some(&sig) = signals.get(i) {
            // Rust's runtime handles SIGSEGV and SIGBUS (to report stack overflows) and lets
            // a raised one pass once; restore the default action so the signal ends the child
            // as a real crash would.
            // SAFETY: signal/raise take a signal number and a handler constant.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
        i
    });
    for (i, &sig) in signals.iter().enumerate() {
        assert!(
            matches!(outcomes[i], Err(ChildError::Signaled { signal, .. }) if signal == sig),
            "child {i}: {:?}",
            outcomes[i]
        );
    }
    assert_eq!(outcomes[signals.len()], Ok(signals.len()));
    let shown = outcomes[0].as_ref().unwrap_err().to_string();
    assert_eq!(shown, "killed by SIGTERM");
}

fn sigkill_from_outside() {
    // Child 1 sends its pid through a pipe and waits to be killed; child 0 reads the pid and
    // kills its sibling with SIGKILL, then returns normally.
    let (r, w) = common::pipe();
    let outcomes = run(3, |i| match i {
        0 => {
            let mut pid = [0u8; 4];
            (&r).read_exact(&mut pid).unwrap();
            let pid = i32::from_le_bytes(pid);
            // SAFETY: kill takes no pointers; `pid` is a sibling that is blocked in pause.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            0
        }
        1 => {
            (&w).write_all(&(std::process::id() as i32).to_le_bytes())
                .unwrap();
            common::sleep_forever()
        }
        _ => 2,
    });
    assert_eq!(outcomes[0], Ok(0));
    assert_eq!(
        outcomes[1],
        Err(ChildError::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false
        })
    );
    assert_eq!(outcomes[2], Ok(2));
}

fn non_zero_exit() {
    let outcomes = run(2, |i| {
        if i == 1 {
            std::process::exit(3);
        }
        i
    });
    assert_eq!(outcomes, vec![Ok(0), Err(ChildError::Exited { code: 3 })]);
}

fn exit_zero_without_result() {
    let outcomes = run(2, |i| {
        if i == 0 {
            std::process::exit(0);
        }
        i
    });
    assert_eq!(outcomes, vec![Err(ChildError::NoResult), Ok(1)]);
}

/// Serializes as a byte that is not a valid bool, deserializes as a bool: decoding fails.
#[derive(Debug, PartialEq)]
struct Lopsided;

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(7)
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool::deserialize(d).map(|_| Lopsided)
    }
}

fn undecodable_result() {
    let outcomes = run(2, |i| (i == 1).then_some(Lopsided));
    assert_eq!(outcomes[0], Ok(None));
    assert!(
        matches!(&outcomes[1], Err(ChildError::Decode(_))),
        "{:?}",
        outcomes[1]
    );
}

/// Fails to serialize, or panics while serializing.
#[derive(Debug, PartialEq, Deserialize)]
struct Refuses(bool);

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            panic!("serializer blew up");
        }
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

fn unencodable_result() {
    let outcomes = run(2, |i| if i == 0 { Ok(Refuses(false)) } else { Err(i) });
    assert!(
        matches!(&outcomes[0], Err(ChildError::Encode(_))),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(outcomes[1], Ok(Err(1)));
}

fn panic_while_encoding() {
    let outcomes = run(1, |_| Refuses(true));
    assert!(
        matches!(&outcomes[0], Err(ChildError::Panicked { message, .. }) if message == "serializer blew up"),
        "{:?}",
        outcomes[0]
    );
}

fn result_over_the_cap() {
    // postcard encodes a Vec<u8> of n < 128 bytes as 1 length byte + n bytes.
    let outcomes = Pfork::new()
        .max_result_bytes(100)
        .run(3, |i| vec![0u8; [99, 100, 5000][i]])
        .unwrap();
    assert_eq!(outcomes[0].as_ref().map(Vec::len), Ok(99));
    assert_eq!(
        outcomes[1],
        Err(ChildError::ResultTooLarge { len: 101, max: 100 })
    );
    assert_eq!(
        outcomes[2],
        Err(ChildError::ResultTooLarge {
            len: 5002,
            max: 100
        })
    );
}

fn fork_failing_part_way() {
    // In a helper process: children 0 and 1 are alive at once (max_alive 2). Child 0 blocks
    // until killed. Child 1 lowers the helper's RLIMIT_NPROC to 1 and returns, so once it is
    // reaped, forking child 2 fails with EAGAIN for real. Child 0 must then be killed and
    // reaped (Cancelled), child 1's result kept, child 3 never started (Cancelled).
    common::in_helper(Duration::from_secs(120), || {
        // RLIMIT_NPROC does not bind root (kernel/fork.c, copy_process); become an unused
        // uid first so the limit applies.
        // SAFETY: getuid/setgid/setuid take plain ids; failure is checked.
        unsafe {
            if libc::getuid() == 0 && (libc::setgid(61_423) != 0 || libc::setuid(61_423) != 0) {
                eprintln!("setuid: {}", std::io::Error::last_os_error());
                return 2;
            }
        }
        let outcomes = Pfork::new()
            .max_alive(2)
            .timeout(Duration::from_secs(100))
            .run(4, |i| {
                if i == 0 {
                    common::sleep_forever();
                }
                let limit = libc::rlimit {
                    rlim_cur: 1,
                    rlim_max: 1,
                };
                // SAFETY: `limit` is a valid rlimit; a null old-limit pointer is allowed.
                // Lowering the parent's limit needs only the same uid.
                let rc = unsafe {
                    libc::prlimit(
                        libc::getppid(),
                        libc::RLIMIT_NPROC,
                        &limit,
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
                i
            })
            .unwrap();
        let expected = vec![
            Err(ChildError::Cancelled),
            Ok(1),
            Err(ChildError::ForkFailed {
                errno: libc::EAGAIN,
            }),
            Err(ChildError::Cancelled),
        ];
        if outcomes != expected {
            eprintln!("fork_failing_part_way: got {outcomes:?}");
            return 1;
        }
        // Nothing left: child 0 was killed and reaped.
        if !common::children().is_empty() {
            eprintln!(
                "fork_failing_part_way: children left {:?}",
                common::children()
            );
            return 3;
        }
        0
    });
}

fn sigchld_ignored_loses_only_exit_codes() {
    // With SIGCHLD ignored the kernel reaps children itself (waitpid(2), NOTES): pfork must
    // not hang, and reports from each child's frame; an exit code is lost (NoResult).
    common::in_helper(Duration::from_secs(120), || {
        // SAFETY: signal takes a signal number and a handler constant.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        let outcomes = run(3, |i| match i {
            0 => 0,
            1 => panic!("ignored parent"),
            _ => std::process::exit(3),
        });
        let ok = matches!(
            &outcomes[..],
            [
                Ok(0),
                Err(ChildError::Panicked { .. }),
                Err(ChildError::NoResult)
            ]
        );
        if !ok {
            eprintln!("sigchld_ignored: got {outcomes:?}");
        }
        i32::from(!ok)
    });
}

fn grandchild_holding_the_pipe_does_not_block() {
    // Child 0 forks a grandchild (no exec, so it keeps the pipe's write end) that outlives
    // it; the run must end when child 0 has been reaped, not when the pipe closes. The
    // grandchild dies with child 0 (its own PR_SET_PDEATHSIG).
    let (r, w) = common::pipe();
    let outcomes = run(2, |i| {
        if i == 0 {
            // SAFETY: the child is single-threaded; the grandchild only calls
            // async-signal-safe functions (prctl, write, pause, _exit).
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    libc::write(std::os::fd::AsRawFd::as_raw_fd(&w), b"g".as_ptr().cast(), 1);
                    loop {
                        libc::pause();
                    }
                }
            }
            // Return only once the grandchild runs (and holds the pipe).
            let mut byte = [0u8; 1];
            (&r).read_exact(&mut byte).unwrap();
        }
        i
    });
    assert_eq!(outcomes, vec![Ok(0), Ok(1)]);
}

fn nested_pfork_is_refused() {
    let outcomes = run(2, |i| match pfork(2, |j| j) {
        Err(PforkError::Nested { depth, max_depth }) => format!("{i}: nested {depth}/{max_depth}"),
        other => format!("{i}: unexpected {other:?}"),
    });
    assert_eq!(
        outcomes,
        vec![
            Ok("0: nested 1/1".to_owned()),
            Ok("1: nested 1/1".to_owned())
        ]
    );
}

fn nesting_allowed_one_level() {
    // With max_depth(2) a child may pfork; its children (depth 2) may not, whatever they ask.
    let outcomes = Pfork::new()
        .max_depth(2)
        .timeout(Duration::from_secs(120))
        .run(2, |i| {
            let inner = Pfork::new()
                .max_depth(2)
                .run(2, |j| {
                    let refused = matches!(
                        Pfork::new().max_depth(2).run(1, |k| k),
                        Err(PforkError::Nested {
                            depth: 2,
                            max_depth: 2
                        })
                    );
                    (10 * i + j, refused)
                })
                .map_err(|e| e.to_string())?;
            inner
                .into_iter()
                .map(|o| o.map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, String>>()
        })
        .unwrap();
    assert_eq!(outcomes[0], Ok(Ok(vec![(0, true), (1, true)])));
    assert_eq!(outcomes[1], Ok(Ok(vec![(10, true), (11, true)])));
}

fn pfork_error_display_and_outcomes() {
    let err = pfork(3, |i| {
        if i != 0 {
            std::process::exit(i as i32 + 40);
        }
        i
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "2 of 3 children failed; child 1: exited with code 41 without a result"
    );
    let failures: Vec<(usize, ChildError)> = err.failures().map(|(i, e)| (i, e.clone())).collect();
    assert_eq!(
        failures,
        [
            (1, ChildError::Exited { code: 41 }),
            (2, ChildError::Exited { code: 42 })
        ]
    );
    let shown = format!("{err:?}");
    assert!(shown.contains("ok: 1"), "{shown}");
    let outcomes = err.into_outcomes().unwrap();
    assert_eq!(outcomes[0], Ok(0));
}
