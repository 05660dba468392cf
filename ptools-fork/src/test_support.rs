//! [`pfork_test!`](crate::pfork_test): `#[test]`s that call pfork under plain `cargo test`.
//!
//! libtest runs every test on a thread of its own, so a test process always has at least
//! two threads and pfork's default policy refuses it ([`PforkError::Threaded`]). Forking
//! such a process anyway and running arbitrary Rust in the child is not sound (a lock held
//! by another thread stays locked in the child), so the policy is not bent for tests.
//! Instead the test runs where it is single-threaded:
//!
//! 1. libtest calls the generated `#[test]` function on one of its threads. That function
//!    runs the test binary again (`/proc/self/exe`, or `current_exe` elsewhere) with
//!    [`ENV_TEST`] set to the test's path, captures its output, prints it through libtest's
//!    capture, and fails with the child's exit status or signal if the child did not
//!    succeed.
//! 2. In the re-executed binary a constructor (`.init_array` on Linux, `__mod_init_func`
//!    on macOS), emitted by the macro for that test, runs before `main`, so before libtest
//!    has started any thread. It finds its own path in [`ENV_TEST`], removes the variable,
//!    runs the test body on the main thread (the only thread), and ends the process: exit
//!    code 0 when the body returned (or returned `Ok`), 101 when it panicked or returned
//!    `Err`. libtest never starts in that process.
//!
//! So pfork in the body sees one thread, and the default policy applies honestly: a body
//! that starts a thread of its own and then calls pfork is refused as anywhere else.
//!
//! [`PforkError::Threaded`]: crate::PforkError::Threaded

use std::io::Write;
use std::process::{Command, Stdio};

/// Set in the re-executed test binary: the path (`module::name`, as `module_path!()` gives
/// it) of the one test body to run there.
pub const ENV_TEST: &str = "PTOOLS_FORK_TEST";

/// What a test body may return: `()` or a `Result` whose `Err` fails the test.
pub trait TestResult {
    /// `Err` with a description when the test failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl TestResult for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> TestResult for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("Error: {e:?}"))
    }
}

/// Not part of the API: called by the `#[test]` function that [`pfork_test!`] generates.
///
/// Runs the test binary again for the test `path`, reports the child's output and fails
/// (panics) when the child did not succeed.
///
/// [`pfork_test!`]: crate::pfork_test
#[doc(hidden)]
pub fn run_in_child(path: &str) {
    if std::env::var_os(ENV_TEST).is_some() {
        // We are the re-executed binary, yet libtest runs: the constructor did not.
        panic!(
            "{ENV_TEST} is set but the test body was not run before main: this target has \
             no constructor support for pfork_test!"
        );
    }
    let exe = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().expect("the test binary's path")
    };
    // The libtest name, in case the constructor does not run: the path without the crate.
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    let out = Command::new(exe)
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(ENV_TEST, path)
        .stdin(Stdio::null())
        .output()
        .expect("running the test binary again for a pfork_test");
    // Through `print!`, so libtest's capture shows the child's output with the result.
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt;
        match out.status.signal() {
            Some(sig) => panic!("pfork_test {path}: the test process died by signal {sig}"),
            None => panic!(
                "pfork_test {path}: the test failed in its single-threaded process ({})",
                out.status
            ),
        }
    }
}

/// Not part of the API: the constructor that [`pfork_test!`] generates calls this before
/// `main`. Returns at once unless [`ENV_TEST`] names `path`; then runs `body` and ends the
/// process.
///
/// [`pfork_test!`]: crate::pfork_test
#[doc(hidden)]
pub fn serve<T: TestResult>(path: &str, body: fn() -> T) {
    match std::env::var_os(ENV_TEST) {
        Some(v) if v == path => {}
        _ => return,
    }
    // SAFETY: this runs in a constructor before `main`: no other thread exists yet, so
    // nothing reads the environment concurrently. Removing the variable keeps the
    // processes the body starts from running the test too.
    unsafe { std::env::remove_var(ENV_TEST) };
    let outcome = std::panic::catch_unwind(body);
    let code = match outcome {
        Ok(r) => match r.into_outcome() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e}");
                101
            }
        },
        // The panic hook has printed the message already.
        Err(_) => 101,
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// `#[test]`s that call pfork, for plain `cargo test`: each body runs on the main thread of
/// a fresh, single-threaded copy of the test binary, so pfork's default thread policy
/// holds (see the crate docs, "Tests").
///
/// ```
/// ptools_fork::pfork_test! {
///     /// Attributes such as `#[ignore]` and doc comments are kept.
///     fn squares() {
///         assert_eq!(ptools_fork::pfork(3, |i| i * i).unwrap(), [0, 1, 4]);
///     }
///
///     fn with_errors() -> Result<(), ptools_fork::PforkError<usize>> {
///         assert_eq!(ptools_fork::pfork(2, |i| i)?, [0, 1]);
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
///
/// Each test costs one extra process start (a few ms). Output of the body (and of its
/// pfork children) is shown by libtest as the test's output. The body runs before `main`,
/// without the small setup Rust's runtime does in `main` (`SIGPIPE` is not ignored, no
/// stack-overflow message, the thread is unnamed), and a failed body ends its process with
/// code 101, which fails the test.
#[macro_export]
macro_rules! pfork_test {
    ($( $(#[$meta:meta])* fn $name:ident() $(-> $ret:ty)? $body:block )*) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            fn body() $(-> $ret)? $body

            #[used]
            #[cfg_attr(target_os = "linux", unsafe(link_section = ".init_array"))]
            #[cfg_attr(target_os = "macos", unsafe(link_section = "__DATA,__mod_init_func"))]
            static __PTOOLS_FORK_TEST: extern "C" fn() = {
                extern "C" fn __ptools_fork_test() {
                    $crate::test_support::serve(
                        concat!(module_path!(), "::", stringify!($name)),
                        body,
                    );
                }
                __ptools_fork_test
            };

            $crate::test_support::run_in_child(concat!(module_path!(), "::", stringify!($name)));
        }
    )*};
}
