//! Shared arrays across real processes: another process attaches by name and writes while
//! this one reads; processes race to create one name; attachers racing a creator see it
//! ready or not ready, never foreign or truncated; an owner killed with SIGKILL leaves
//! a stale segment that is listed, taken over and removed; a full `/dev/shm` (a real small
//! tmpfs in a private mount namespace) is a typed error that leaves nothing behind.
//!
//! Child processes are this test binary re-run with `--exact <role> --ignored`; a role
//! test does nothing unless the environment says it is that role.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reaper, TestPrefix, child, is_role, wait_timeout};
use ptools_shm::{
    Prefix, ShmArray, ShmBuilder, ShmCfg, ShmError, ShmSet, list_shm, remove_stale_shm,
};

const LIMIT: Duration = Duration::from_secs(60);
const WRITER_LEN: usize = 1 << 20;

fn env_prefix() -> Prefix {
    Prefix::new(std::env::var("T_PREFIX").unwrap()).unwrap()
}

// ---- another process attaches and writes while we read ----

#[test]
#[ignore = "child role of another_process_attaches_by_name_and_writes"]
fn role_writer() {
    if !is_role("role_writer") {
        return;
    }
    let cfg = ShmCfg::new::<u64>("data", WRITER_LEN).unwrap();
    let mut a = ShmArray::<u64>::attach(&cfg, &env_prefix()).unwrap();
    assert!(!a.is_creator());
    // Fill back to front; element 0 last, as the "done" mark.
    for i in (1..WRITER_LEN).rev() {
        a[i] = 3 * i as u64 + 1;
    }
    let p = a.as_mut_ptr();
    // SAFETY: index 0 is in bounds; a volatile write so the mark is a real store.
    unsafe { std::ptr::write_volatile(p, 1) };
}

#[test]
fn another_process_attaches_by_name_and_writes() {
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<u64>("data", WRITER_LEN).unwrap();
    let a = ShmArray::<u64>::create(&cfg, &p).unwrap();
    let mut kids = Reaper(vec![
        child("role_writer", &[("T_PREFIX", p.as_str())])
            .spawn()
            .unwrap(),
    ]);
    // Read while the writer works: watch progress through volatile reads of the first
    // element until the writer's mark appears.
    let start = Instant::now();
    let first = a.as_ptr();
    // SAFETY: index 0 is in bounds of the live mapping; volatile because another process
    // writes it.
    while unsafe { std::ptr::read_volatile(first) } != 1 {
        assert!(start.elapsed() < LIMIT, "the writer never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = wait_timeout(&mut kids.0[0], LIMIT);
    assert!(status.success(), "writer failed: {status}");
    assert!(
        a.iter()
            .enumerate()
            .skip(1)
            .all(|(i, &x)| x == 3 * i as u64 + 1),
        "every element holds what the other process wrote"
    );
    drop(a);
    assert!(p.leftovers().is_empty());
}

// ---- processes race to create one name ----

#[test]
#[ignore = "child role of exactly_one_of_several_racing_creators_wins"]
fn role_racer() {
    if !is_role("role_racer") {
        return;
    }
    // If the parent never closes our stdin (a bug in the test), do not hang forever.
    std::thread::spawn(|| {
        std::thread::sleep(LIMIT);
        std::process::exit(3);
    });
    let cfg = ShmCfg::new::<u8>("contested", 1 << 16).unwrap();
    let mut line = String::new();
    let stdin = std::io::stdin();
    stdin.lock().read_line(&mut line).unwrap(); // "go"
    let result = ShmSet::create(&[cfg], &env_prefix());
    let verdict = match &result {
        Ok(_) => "won".to_owned(),
        Err(ShmError::AlreadyExists { .. }) => "lost".to_owned(),
        Err(e) => format!("error {e}"),
    };
    println!("RESULT {verdict}");
    std::io::stdout().flush().unwrap();
    // Hold the segment (if won) until the parent has heard everyone.
    while stdin.lock().read_line(&mut line).unwrap_or(0) > 0 {}
    drop(result);
}

#[test]
fn exactly_one_of_several_racing_creators_wins() {
    const N: usize = 6;
    let p = TestPrefix::new();
    let mut kids = Reaper(Vec::new());
    for _ in 0..N {
        kids.0.push(
            child("role_racer", &[("T_PREFIX", p.as_str())])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for k in &mut kids.0 {
        k.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let mut verdicts = Vec::new();
    // Kept open until the racers exit: they still print libtest's summary.
    let mut outputs = Vec::new();
    for k in &mut kids.0 {
        let mut out = BufReader::new(k.stdout.take().unwrap());
        // libtest prints "test role_racer ... " without a newline before the test's own
        // output, so the mark can be mid-line.
        let line = (&mut out)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("RESULT ").map(|(_, v)| v.to_owned()))
            .expect("a racer reported nothing");
        verdicts.push(line);
        outputs.push(out);
    }
    for k in &mut kids.0 {
        drop(k.stdin.take()); // EOF: the racers exit
    }
    for k in &mut kids.0 {
        assert!(wait_timeout(k, LIMIT).success());
    }
    drop(outputs);
    let won = verdicts.iter().filter(|v| *v == "won").count();
    let lost = verdicts.iter().filter(|v| *v == "lost").count();
    assert_eq!((won, lost), (1, N - 1), "verdicts: {verdicts:?}");
    assert!(p.leftovers().is_empty(), "the winner unlinked on exit");
}

// ---- attachers race a creator that is still at work ----

/// One round of a racer in `attachers_racing_a_creator_see_it_ready_or_not_ready`: create
/// first (attach when the name is taken), or attach first (create when there is nothing,
/// attach when that is taken meanwhile). Returns the outcome and the handle to hold.
fn create_or_attach(
    cfg: &ShmCfg,
    prefix: &Prefix,
    create_first: bool,
) -> (String, Option<ShmArray<u64>>) {
    let attach = || ShmArray::<u64>::attach(cfg, prefix);
    let create_else_attach = || match ShmArray::<u64>::create(cfg, prefix) {
        Err(ShmError::AlreadyExists { .. }) => attach(),
        r => r,
    };
    let result = if create_first {
        create_else_attach()
    } else {
        match attach() {
            Err(ShmError::NotFound { .. }) => create_else_attach(),
            r => r,
        }
    };
    match result {
        Ok(a) if a.is_creator() => ("created".to_owned(), Some(a)),
        Ok(a) => ("attached".to_owned(), Some(a)),
        Err(ShmError::NotReady { .. }) => ("not-ready".to_owned(), None),
        Err(e) => (format!("error {e:?}"), None),
    }
}

#[test]
#[ignore = "child role of attachers_racing_a_creator_see_it_ready_or_not_ready"]
fn role_create_or_attach() {
    if !is_role("role_create_or_attach") {
        return;
    }
    // If the parent never closes our stdin (a bug in the test), do not hang forever.
    std::thread::spawn(|| {
        std::thread::sleep(LIMIT);
        std::process::exit(3);
    });
    let prefix = env_prefix();
    let me: usize = std::env::var("T_INDEX").unwrap().parse().unwrap();
    let stdin = std::io::stdin();
    let mut held = None;
    let mut line = String::new();
    // "go <round>" starts a round; EOF ends the run.
    while {
        line.clear();
        stdin.lock().read_line(&mut line).unwrap() > 0
    } {
        let round: usize = line.trim().strip_prefix("go ").unwrap().parse().unwrap();
        // The previous round's segment lived until every racer had reported on it.
        drop(held.take());
        let cfg = ShmCfg::new::<u64>(&format!("r{round}"), 512).unwrap();
        let (verdict, handle) = create_or_attach(&cfg, &prefix, (me + round).is_multiple_of(2));
        held = handle;
        println!("RESULT {verdict}");
        std::io::stdout().flush().unwrap();
    }
    drop(held);
    println!("ROLE OK");
}

#[test]
fn attachers_racing_a_creator_see_it_ready_or_not_ready() {
    const N: usize = 8;
    const ROUNDS: usize = 200;
    let p = TestPrefix::new();
    let mut kids = Reaper(Vec::new());
    for i in 0..N {
        kids.0.push(
            child(
                "role_create_or_attach",
                &[("T_PREFIX", p.as_str()), ("T_INDEX", &i.to_string())],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
        );
    }
    let mut outs: Vec<_> = kids
        .0
        .iter_mut()
        .map(|k| BufReader::new(k.stdout.take().unwrap()).lines())
        .collect();
    let mut not_ready = 0;
    for round in 0..ROUNDS {
        // All racers start the round at once, on a name of its own.
        for k in &mut kids.0 {
            writeln!(k.stdin.as_mut().unwrap(), "go {round}").unwrap();
        }
        let verdicts: Vec<String> = outs
            .iter_mut()
            .map(|lines| {
                // libtest prints "test role_... " without a newline before the role's
                // first line, so the mark can be mid-line.
                lines
                    .map_while(Result::ok)
                    .find_map(|l| l.split_once("RESULT ").map(|(_, v)| v.to_owned()))
                    .expect("a racer died mid-run")
            })
            .collect();
        let created = verdicts.iter().filter(|v| *v == "created").count();
        let others_ok = verdicts
            .iter()
            .all(|v| ["created", "attached", "not-ready"].contains(&v.as_str()));
        assert!(
            created == 1 && others_ok,
            "round {round}: one creator, every other racer attached or told not-ready: \
             {verdicts:?}"
        );
        not_ready += verdicts.iter().filter(|v| *v == "not-ready").count();
    }
    for k in &mut kids.0 {
        drop(k.stdin.take()); // EOF: the racers drop their handles and exit
    }
    for (k, lines) in kids.0.iter_mut().zip(&mut outs) {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = wait_timeout(k, LIMIT);
        assert!(
            status.success() && rest.iter().any(|l| l.contains("ROLE OK")),
            "racer failed: {status}\n{}",
            rest.join("\n")
        );
    }
    println!(
        "{not_ready} of {} attaches were told not-ready",
        ROUNDS * (N - 1)
    );
    assert!(
        p.leftovers().is_empty(),
        "every round's creator unlinked its segment"
    );
}

// ---- an owner killed with SIGKILL ----

#[test]
#[ignore = "child role of a_killed_owners_segment_is_listed_taken_over_and_removed"]
fn role_doomed_owner() {
    if !is_role("role_doomed_owner") {
        return;
    }
    let cfgs = [
        ShmCfg::new::<f32>("left", [10, 20]).unwrap(),
        ShmCfg::new::<i8>("behind", 5).unwrap(),
    ];
    let mut set = ShmSet::create(&cfgs, &env_prefix()).unwrap();
    set.get_mut::<f32>("left").unwrap()[0] = 9.0;
    // SAFETY: kill(2) on our own pid; SIGKILL runs no destructor, as a crash would.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL cannot be caught");
}

#[test]
fn a_killed_owners_segment_is_listed_taken_over_and_removed() {
    let p = TestPrefix::new();
    let mut kid = child("role_doomed_owner", &[("T_PREFIX", p.as_str())])
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut kid, LIMIT);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(p.leftovers().len(), 2, "SIGKILL left both segments");

    let mine: Vec<_> = list_shm()
        .unwrap()
        .into_iter()
        .filter(|s| s.prefix == p.as_str())
        .collect();
    assert_eq!(mine.len(), 2);
    let left = mine.iter().find(|s| s.name == "left").unwrap();
    assert_eq!(left.owner_pid, kid.id());
    assert!(!left.owner_alive);
    assert_eq!(left.elem, Some(ptools_shm::ElemType::F32));
    assert_eq!(left.dims.as_deref(), Some(&[10, 20][..]));
    assert_eq!(left.size, 128 + 10 * 20 * 4);

    // The next job to create the same name takes it over (fresh, zeroed).
    let left_cfg = ShmCfg::new::<f32>("left", [10, 20]).unwrap();
    let fresh = ShmArray::<f32>::create(&left_cfg, &p).unwrap();
    assert_eq!(fresh[0], 0.0);
    let info = list_shm()
        .unwrap()
        .into_iter()
        .find(|s| s.segment == fresh.segment_name())
        .unwrap();
    assert!(info.owner_alive);
    assert_eq!(info.owner_pid, std::process::id());

    // Only the stale one goes; the live one and a foreign object stay.
    let removed = remove_stale_shm(Some(&p)).unwrap();
    assert_eq!(
        removed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["behind"]
    );
    assert_eq!(
        p.leftovers(),
        vec![fresh.segment_name()[1..].to_owned()],
        "the live owner's segment stays"
    );
    drop(fresh);
    assert!(p.leftovers().is_empty());
}

#[test]
fn stale_cleanup_never_touches_foreign_objects_or_other_prefixes() {
    let p = TestPrefix::new();
    let other = TestPrefix::new();
    let foreign = format!("/dev/shm/ptools_{}_foreign", p.as_str());
    std::fs::write(&foreign, vec![0xabu8; 4096]).unwrap();
    // A kept segment whose "owner" is this live process is not stale either.
    let mut kept = ShmArray::<u8>::create(&ShmCfg::new::<u8>("k", 1).unwrap(), &other).unwrap();
    kept.keep_on_drop(true);
    drop(kept);
    let removed = remove_stale_shm(None).unwrap();
    assert!(
        removed
            .iter()
            .all(|s| s.prefix != p.as_str() && s.prefix != other.as_str())
    );
    assert!(std::path::Path::new(&foreign).exists());
    assert_eq!(other.leftovers().len(), 1);
    assert!(
        list_shm().unwrap().iter().all(|s| s.name != "foreign"),
        "objects without our header are not listed"
    );
}

// ---- a forked child owns what it creates ----

#[test]
#[ignore = "child role of a_forked_childs_segment_belongs_to_the_child"]
fn role_forker() {
    if !is_role("role_forker") {
        return;
    }
    let p = env_prefix();
    // The parent creates first, so its own identity is computed and cached before the fork.
    let _mine = ShmArray::<u8>::create(&ShmCfg::new::<u8>("parent", 1).unwrap(), &p).unwrap();
    // Start times count in clock ticks (1/100 s): let the child's differ from ours.
    std::thread::sleep(Duration::from_millis(100));
    let mut ready = [0 as libc::c_int; 2];
    // SAFETY: pipe(2) into a two-element array.
    assert_eq!(unsafe { libc::pipe(ready.as_mut_ptr()) }, 0);
    // SAFETY: this role process runs one test; the child only creates a segment, writes
    // one byte and sleeps until killed (it leaves with _exit if anything fails).
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let ok = ShmBuilder::new()
            .prefix(p.clone())
            .keep(true)
            .create(&[ShmCfg::new::<u8>("child", 1).unwrap()])
            .is_ok();
        // SAFETY: writing one byte from a local to our pipe end; then sleep or _exit.
        unsafe {
            libc::write(ready[1], [u8::from(ok)].as_ptr().cast(), 1);
            libc::sleep(60);
            libc::_exit(0);
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a local buffer from our pipe end.
    assert_eq!(unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) }, 1);
    assert_eq!(b[0], 1, "the child created its segment");
    let info = list_shm()
        .unwrap()
        .into_iter()
        .find(|s| s.prefix == p.as_str() && s.name == "child")
        .unwrap();
    assert_eq!(
        info.owner_pid, child as u32,
        "the child, not the parent, owns it"
    );
    assert!(info.owner_alive, "a live child's segment is not stale");
    assert!(remove_stale_shm(Some(&p)).unwrap().is_empty());
    // SAFETY: killing and reaping the child we forked.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let removed = remove_stale_shm(Some(&p)).unwrap();
    assert_eq!(removed.len(), 1, "once dead, it is stale");
    println!("ROLE OK");
}

#[test]
fn a_forked_childs_segment_belongs_to_the_child() {
    let p = TestPrefix::new();
    let out = child("role_forker", &[("T_PREFIX", p.as_str())])
        .output()
        .unwrap();
    common::assert_role_ok(&out);
}

// ---- dropping with no descriptors left ----

#[test]
#[ignore = "child role of dropping_a_set_unlinks_even_without_free_descriptors"]
fn role_no_fds() {
    if !is_role("role_no_fds") {
        return;
    }
    let p = env_prefix();
    let cfgs = [
        ShmCfg::new::<u8>("a", 10).unwrap(),
        ShmCfg::new::<u8>("b", 10).unwrap(),
    ];
    let set = ShmSet::create(&cfgs, &p).unwrap();
    // Use up every descriptor.
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "descriptors exhausted"
    );
    drop(set);
    drop(held);
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("ptools_{}_", p.as_str()))
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    println!("ROLE OK");
}

#[test]
fn dropping_a_set_unlinks_even_without_free_descriptors() {
    let p = TestPrefix::new();
    let mut cmd = child("role_no_fds", &[("T_PREFIX", p.as_str())]);
    // A small descriptor limit keeps exhausting them quick.
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; this runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().unwrap();
    common::assert_role_ok(&out);
    assert!(p.leftovers().is_empty());
}

// ---- a full /dev/shm ----

#[test]
#[ignore = "child role of a_full_dev_shm_is_out_of_space_and_leaves_nothing"]
fn role_small_tmpfs() {
    if !is_role("role_small_tmpfs") {
        return;
    }
    // Inside a private mount namespace whose /dev/shm is a 4 MiB tmpfs.
    let p = Prefix::new("full").unwrap();
    let big = ShmCfg::new::<u8>("big", 8 << 20).unwrap();
    match ShmSet::create(std::slice::from_ref(&big), &p) {
        Err(ShmError::OutOfSpace { bytes, .. }) => assert_eq!(bytes, 128 + (8 << 20)),
        other => panic!("expected OutOfSpace, got {other:?}"),
    }
    // A set whose first array fits and second does not: the first is unlinked again.
    let cfgs = [ShmCfg::new::<u8>("fits", 1 << 20).unwrap(), big];
    assert!(matches!(
        ShmSet::create(&cfgs, &p),
        Err(ShmError::OutOfSpace { .. })
    ));
    let left: Vec<_> = std::fs::read_dir("/dev/shm").unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // What fits still works.
    let mut ok = ShmArray::<u8>::create(&ShmCfg::new::<u8>("ok", 1 << 20).unwrap(), &p).unwrap();
    ok.fill(7);
    // Without reservation only the header's page is taken at creation: once even that
    // does not fit, creation is OutOfSpace too (never a SIGBUS while writing the header).
    let small = ShmBuilder::new().prefix(p.clone()).reserve(false);
    let mut held = Vec::new();
    let last = loop {
        assert!(held.len() < 4096, "a 4 MiB tmpfs never filled up");
        let cfg = ShmCfg::new::<u8>(&format!("t{}", held.len()), 1).unwrap();
        match small.create_array::<u8>(&cfg) {
            Ok(a) => held.push(a),
            Err(e) => break e,
        }
    };
    assert!(matches!(last, ShmError::OutOfSpace { .. }), "{last:?}");
    drop(held);
    let left: Vec<_> = std::fs::read_dir("/dev/shm").unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "only `ok` is left: {left:?}");
    println!("ROLE OK");
}

#[test]
fn a_full_dev_shm_is_out_of_space_and_leaves_nothing() {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /dev/shm"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!(
            "SKIPPED a_full_dev_shm_is_out_of_space_and_leaves_nothing: \
             `unshare -m` with a tmpfs mount is not permitted here (needs root or \
             user namespaces)"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=4m tmpfs /dev/shm && exec \"$@\"",
            "sh",
        ])
        .arg(exe)
        .args(["--exact", "role_small_tmpfs", "--ignored", "--nocapture"])
        .env(common::ROLE, "role_small_tmpfs")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    common::assert_role_ok(&out);
}
