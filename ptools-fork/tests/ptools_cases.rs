//! PTools.jl's own pfork cases, then results of several shapes and sizes, and the promise that
//! the parent's buffered output is never printed twice.

mod common;

use std::io::Read;
use std::time::Duration;

use ptools_fork::{Pfork, pfork};
use serde::{Deserialize, Serialize};

fn main() {
    if std::env::var_os(STDOUT_HELPER).is_some() {
        stdout_helper();
        return;
    }
    common::run(&[
        ("pfork_2_identity", pfork_2_identity),
        ("pfork_100_identity", pfork_100_identity),
        (
            "ten_children_return_10x100_arrays",
            ten_children_return_10x100_arrays,
        ),
        ("captured_parameter", captured_parameter),
        ("zero_children", zero_children),
        ("serde_result_types", serde_result_types),
        (
            "large_results_from_concurrent_children",
            large_results_from_concurrent_children,
        ),
        (
            "children_see_parent_data_copy_on_write",
            children_see_parent_data_copy_on_write,
        ),
        (
            "each_child_is_its_own_process",
            each_child_is_its_own_process,
        ),
        (
            "buffered_output_is_printed_once",
            buffered_output_is_printed_once,
        ),
    ]);
}

fn pfork_2_identity() {
    assert_eq!(pfork(2, |i| i).unwrap(), vec![0, 1]);
}

fn pfork_100_identity() {
    assert_eq!(pfork(100, |i| i).unwrap(), (0..100).collect::<Vec<_>>());
}

fn ten_children_return_10x100_arrays() {
    // PTools.jl: each child returns a 10x100 array; rows here, row-major.
    let arrays: Vec<Vec<Vec<f64>>> = pfork(10, |i| {
        (0..10)
            .map(|r| (0..100).map(|c| (i * 1000 + r * 100 + c) as f64).collect())
            .collect()
    })
    .unwrap();
    assert_eq!(arrays.len(), 10);
    for (i, a) in arrays.iter().enumerate() {
        assert_eq!(a.len(), 10);
        for (r, row) in a.iter().enumerate() {
            assert_eq!(row.len(), 100);
            for (c, x) in row.iter().enumerate() {
                assert_eq!(*x, (i * 1000 + r * 100 + c) as f64);
            }
        }
    }
}

fn captured_parameter() {
    let scale = 2.5_f64;
    let offset = String::from("child-");
    let got = pfork(4, |i| format!("{offset}{}", i as f64 * scale)).unwrap();
    assert_eq!(got, ["child-0", "child-2.5", "child-5", "child-7.5"]);
}

fn zero_children() {
    let got: Vec<u8> = pfork(0, |_| -> u8 { unreachable!("no child runs") }).unwrap();
    assert!(got.is_empty());
    let outcomes = Pfork::new().run(0, |i| i).unwrap();
    assert!(outcomes.is_empty());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
}

fn serde_result_types() {
    let got = pfork(3, |i| match i {
        0 => (Shape::Point, None, String::new()),
        1 => (Shape::Circle { r: 1.5 }, Some(-7i64), "ünï".to_owned()),
        _ => (
            Shape::Poly(vec![(1, 2), (-3, 4)]),
            Some(i64::MAX),
            "x".repeat(1000),
        ),
    })
    .unwrap();
    assert_eq!(got[0], (Shape::Point, None, String::new()));
    assert_eq!(
        got[1],
        (Shape::Circle { r: 1.5 }, Some(-7), "ünï".to_owned())
    );
    assert_eq!(
        got[2],
        (
            Shape::Poly(vec![(1, 2), (-3, 4)]),
            Some(i64::MAX),
            "x".repeat(1000)
        )
    );
    let unit: Vec<()> = pfork(2, |_| ()).unwrap();
    assert_eq!(unit.len(), 2);
}

fn large_results_from_concurrent_children() {
    // 8 MiB each, far above a pipe's 64 KiB buffer, four children writing at once: the parent
    // must read all pipes as data arrives or the children would block each other.
    const LEN: usize = 8 << 20;
    let got = Pfork::new()
        .timeout(Duration::from_secs(300))
        .run(4, |i| vec![i as u64; LEN / 8])
        .unwrap();
    for (i, r) in got.into_iter().enumerate() {
        let v = r.unwrap();
        assert_eq!(v.len(), LEN / 8);
        assert!(v.iter().all(|&x| x == i as u64));
    }
}

fn children_see_parent_data_copy_on_write() {
    let mut data: Vec<u32> = (0..100_000).collect();
    let got = pfork(4, |i| {
        // Reading the parent's data needs no copy in; writing to it changes only the child's
        // copy-on-write pages.
        let sum: u64 = data.iter().map(|&x| u64::from(x)).sum();
        let mut mine = data.clone();
        mine[0] = 1_000_000 + i as u32;
        (sum, mine[0])
    })
    .unwrap();
    for (i, (sum, first)) in got.into_iter().enumerate() {
        assert_eq!(sum, 99_999 * 100_000 / 2);
        assert_eq!(first, 1_000_000 + i as u32);
    }
    data[0] = 5;
    assert_eq!(data[0], 5);
}

fn each_child_is_its_own_process() {
    let me = std::process::id();
    let got = pfork(4, |i| (i, std::process::id(), unsafe_getppid())).unwrap();
    let mut pids: Vec<u32> = got.iter().map(|g| g.1).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4);
    assert!(got.iter().all(|g| g.1 != me && g.2 == me));
}

fn unsafe_getppid() -> u32 {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    ppid as u32
}

const STDOUT_HELPER: &str = "PTOOLS_FORK_TEST_STDOUT_HELPER";

/// Run as a separate process: prints a partial line (buffered by Rust's line-buffered stdout
/// and by C stdio), forks three children that print, then ends the line.
fn stdout_helper() {
    use std::io::Write;
    print!("parent-partial;");
    // A C-stdio buffered write too (no newline, so it stays in the FILE buffer).
    // SAFETY: the format string is a valid NUL-terminated C string without conversions.
    unsafe { libc::printf(c"c-partial;".as_ptr()) };
    let got = pfork(3, |i| {
        println!("child {i} speaking");
        print!("child {i} partial;");
        i
    })
    .unwrap();
    println!("done {got:?}");
    std::io::stdout().flush().unwrap();
}

fn buffered_output_is_printed_once() {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .env(STDOUT_HELPER, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The output is small (well under a pipe buffer), so waiting before reading is safe.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("helper timed out");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(status.success(), "{status}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out.matches("parent-partial;").count(), 1, "{out}");
    assert_eq!(out.matches("c-partial;").count(), 1, "{out}");
    for i in 0..3 {
        assert_eq!(
            out.matches(&format!("child {i} speaking\n")).count(),
            1,
            "{out}"
        );
        assert_eq!(
            out.matches(&format!("child {i} partial;")).count(),
            1,
            "{out}"
        );
    }
    assert_eq!(out.matches("done [0, 1, 2]").count(), 1, "{out}");
}
