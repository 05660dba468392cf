//! Every input error and fault of creating, attaching and unlinking is a typed error, and
//! none leaves a segment behind.

mod common;

use std::ffi::CString;

use common::TestPrefix;
use ptools_shm::{ElemType, Prefix, ShmArray, ShmBuilder, ShmCfg, ShmError, ShmSet, unlink_shm};

/// Creates a raw POSIX object of `size` bytes holding `bytes` at its start, outside ptools.
fn raw_object(name: &str, size: usize, bytes: &[u8]) {
    let c = CString::new(name).unwrap();
    // SAFETY: plain libc calls on a valid C string and a descriptor we own; the mapping
    // is written within its length and unmapped before returning.
    unsafe {
        let fd = libc::shm_open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        );
        assert!(fd >= 0, "shm_open {name}");
        assert_eq!(libc::ftruncate(fd, size as libc::off_t), 0);
        if !bytes.is_empty() {
            let p = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len());
            libc::munmap(p, size);
        }
        libc::close(fd);
    }
}

#[test]
fn input_errors_come_before_any_system_call() {
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<u8>("n".repeat(200), 1).unwrap();
    let cfgs = [cfg.clone(), cfg];
    let err = ShmSet::create(&cfgs, &p).unwrap_err();
    assert!(matches!(err, ShmError::DuplicateName { .. }), "{err}");
    assert!(err.is_invalid_input());
    assert!(p.leftovers().is_empty(), "nothing was created");
    let err = ShmCfg::new::<u8>("n".repeat(201), 1).unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}

#[test]
fn the_longest_prefix_and_name_still_fit_the_system() {
    // 8 ("ptools_" and "_") + 32 + 200 bytes stays below Linux's NAME_MAX (255); on macOS
    // the name is shortened by a hash. Either way the documented maxima always work.
    let p = TestPrefix::new();
    let longest = TestPrefix(
        Prefix::new(format!(
            "{}{}",
            p.as_str(),
            "p".repeat(32 - p.as_str().len())
        ))
        .unwrap(),
    );
    let cfg = ShmCfg::new::<u8>("n".repeat(200), 1).unwrap();
    let a = ShmArray::<u8>::create(&cfg, &longest).unwrap();
    assert_eq!(a.segment_name().len(), 1 + 7 + 32 + 1 + 200);
    drop(a);
    assert!(
        ShmSet::attach(&[cfg], &longest).is_err(),
        "unlinked on drop"
    );
}

#[test]
fn wrong_element_type_or_dims_is_refused_on_attach() {
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<f32>("a", [4, 5]).unwrap();
    let _set = ShmSet::create(std::slice::from_ref(&cfg), &p).unwrap();

    let as_u32 = ShmCfg::new::<u32>("a", [4, 5]).unwrap();
    match ShmSet::attach(&[as_u32], &p) {
        Err(ShmError::TypeMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, ElemType::U32);
            assert_eq!(found, ElemType::F32);
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    let reshaped = ShmCfg::new::<f32>("a", [5, 4]).unwrap();
    match ShmSet::attach(&[reshaped], &p) {
        Err(ShmError::DimsMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, vec![5, 4]);
            assert_eq!(found, vec![4, 5]);
        }
        other => panic!("expected DimsMismatch, got {other:?}"),
    }
    // A typed handle for the wrong type is refused before anything is created.
    let err = ShmArray::<u8>::create(&ShmCfg::new::<f32>("b", 1).unwrap(), &p).unwrap_err();
    assert!(matches!(err, ShmError::TypeMismatch { .. }), "{err}");
    assert_eq!(p.leftovers().len(), 1, "only `a` exists");
}

#[test]
fn missing_truncated_foreign_and_unready_segments_are_refused() {
    let p = TestPrefix::new();
    let cfg = |n: &str| ShmCfg::new::<u64>(n, 100).unwrap();

    let err = ShmSet::attach(&[cfg("missing")], &p).unwrap_err();
    assert!(matches!(err, ShmError::NotFound { .. }), "{err}");

    // Too small to hold a header.
    raw_object(&p.segment_name("tiny"), 16, &[]);
    let err = ShmSet::attach(&[cfg("tiny")], &p).unwrap_err();
    assert!(matches!(err, ShmError::Truncated { .. }), "{err}");

    // Large enough, but no ptools header.
    raw_object(&p.segment_name("foreign"), 4096, b"not ours at all");
    let err = ShmSet::attach(&[cfg("foreign")], &p).unwrap_err();
    assert!(matches!(err, ShmError::Foreign { .. }), "{err}");

    // Our magic and version, ready flag not set: a creator still at work.
    let mut hdr = b"PTOOLSHM".to_vec();
    hdr.extend_from_slice(&1u32.to_ne_bytes());
    raw_object(&p.segment_name("unready"), 4096, &hdr);
    let err = ShmSet::attach(&[cfg("unready")], &p).unwrap_err();
    assert!(matches!(err, ShmError::NotReady { .. }), "{err}");

    // A real segment cut short after creation.
    let real = ShmCfg::new::<u64>("cut", 10_000).unwrap();
    let mut set = ShmSet::create(std::slice::from_ref(&real), &p).unwrap();
    set.keep_on_drop(true);
    drop(set);
    let c = CString::new(p.segment_name("cut")).unwrap();
    // SAFETY: libc calls on a valid C string and a descriptor we own and close.
    unsafe {
        let fd = libc::shm_open(c.as_ptr(), libc::O_RDWR, 0);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, 1000), 0);
        libc::close(fd);
    }
    let err = ShmSet::attach(&[real], &p).unwrap_err();
    assert!(matches!(err, ShmError::Truncated { .. }), "{err}");
    // Guard removes the raw objects and the cut segment.
}

#[test]
fn a_live_owners_name_is_not_taken_and_a_failed_set_leaves_nothing() {
    let p = TestPrefix::new();
    let b = ShmCfg::new::<i16>("b", 8).unwrap();
    let held = ShmSet::create(std::slice::from_ref(&b), &p).unwrap();
    let cfgs = [ShmCfg::new::<f64>("a", 1000).unwrap(), b.clone()];
    match ShmSet::create(&cfgs, &p) {
        Err(ShmError::AlreadyExists { owner_pid, .. }) => {
            assert_eq!(owner_pid, Some(std::process::id()));
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // `a` was created before `b` failed, and was unlinked again.
    assert_eq!(p.leftovers(), vec![format!("ptools_{}_b", p.as_str())]);
    drop(held);
    assert!(p.leftovers().is_empty());
}

#[test]
fn a_foreign_object_under_our_name_is_never_replaced() {
    let p = TestPrefix::new();
    raw_object(&p.segment_name("x"), 4096, b"someone else's");
    let err = ShmSet::create(&[ShmCfg::new::<u8>("x", 10).unwrap()], &p).unwrap_err();
    assert!(
        matches!(
            err,
            ShmError::AlreadyExists {
                owner_pid: None,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(p.leftovers().len(), 1);
}

#[test]
fn unlinking_twice_is_a_typed_error_and_drop_then_does_nothing() {
    let p = TestPrefix::new();
    let cfgs = [ShmCfg::new::<u8>("u", 64).unwrap()];
    let set = ShmSet::create(&cfgs, &p).unwrap();
    unlink_shm(&cfgs, &p).unwrap();
    assert!(p.leftovers().is_empty());
    let err = unlink_shm(&cfgs, &p).unwrap_err();
    assert!(matches!(err, ShmError::NotFound { .. }), "{err}");
    // A new segment under the same name belongs to its new creator: the old handle's drop
    // must not unlink it.
    let newer = ShmSet::create(&cfgs, &p).unwrap();
    drop(set);
    assert_eq!(p.leftovers().len(), 1, "the newer segment survives");
    drop(newer);
    assert!(p.leftovers().is_empty());
}

#[test]
fn keep_leaves_the_segment_and_data_for_a_later_attach() {
    let p = TestPrefix::new();
    let cfgs = [ShmCfg::new::<i64>("kept", [3, 3]).unwrap()];
    {
        let mut set = ShmBuilder::new()
            .prefix(p.0.clone())
            .keep(true)
            .create(&cfgs)
            .unwrap();
        set.get_mut::<i64>("kept").unwrap()[8] = -7;
    }
    let set = ShmSet::attach(&cfgs, &p).unwrap();
    assert_eq!(set.get::<i64>("kept").unwrap()[8], -7);
    drop(set);
    unlink_shm(&cfgs, &p).unwrap();
    assert!(p.leftovers().is_empty());
}

#[test]
fn unreserved_and_populated_arrays_work_and_start_zeroed() {
    let p = TestPrefix::new();
    for (reserve, populate) in [(false, false), (false, true), (true, true)] {
        let cfg = ShmCfg::new::<u32>(format!("z{reserve}{populate}"), 70_000).unwrap();
        let mut a = ShmBuilder::new()
            .prefix(p.0.clone())
            .reserve(reserve)
            .populate(populate)
            .keep(true)
            .create_array::<u32>(&cfg)
            .unwrap();
        assert!(a.iter().all(|&x| x == 0));
        a.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32);
        drop(a);
        let b = ShmArray::<u32>::attach(&cfg, &p).unwrap();
        assert_eq!(b[69_999], 69_999);
        drop(b);
        unlink_shm(std::slice::from_ref(&cfg), &p).unwrap();
    }
    assert!(p.leftovers().is_empty());
}

#[test]
fn one_process_holds_one_handle_per_segment() {
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<u64>("once", 4).unwrap();
    let a = ShmArray::<u64>::create(&cfg, &p).unwrap();
    // A second handle would give safe code two overlapping slices.
    let err = ShmArray::<u64>::attach(&cfg, &p).unwrap_err();
    assert!(matches!(err, ShmError::AlreadyMapped { .. }), "{err}");
    let err = ShmSet::attach(std::slice::from_ref(&cfg), &p).unwrap_err();
    assert!(matches!(err, ShmError::AlreadyMapped { .. }), "{err}");
    // Once the handle is gone (segment kept), attaching works again, once.
    let mut a = a;
    a.keep_on_drop(true);
    drop(a);
    let b = ShmArray::<u64>::attach(&cfg, &p).unwrap();
    assert!(matches!(
        ShmArray::<u64>::attach(&cfg, &p),
        Err(ShmError::AlreadyMapped { .. })
    ));
    drop(b);
    unlink_shm(&[cfg], &p).unwrap();
}

#[test]
fn unlink_shm_leaves_foreign_objects_alone() {
    let p = TestPrefix::new();
    raw_object(&p.segment_name("alien"), 4096, b"not a ptools header");
    let cfg = ShmCfg::new::<u8>("alien", 1).unwrap();
    let err = unlink_shm(&[cfg], &p).unwrap_err();
    assert!(matches!(err, ShmError::Foreign { .. }), "{err}");
    assert_eq!(p.leftovers().len(), 1);
}

#[test]
fn a_blank_object_is_taken_over_only_when_old_and_unlocked() {
    // A creator that died between shm_open and its first write leaves a blank object.
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<u8>("blank", 16).unwrap();
    raw_object(&p.segment_name("blank"), 0, &[]);
    // Young: it may be a creator at work.
    let err = ShmSet::create(std::slice::from_ref(&cfg), &p).unwrap_err();
    assert!(
        matches!(
            err,
            ShmError::AlreadyExists {
                owner_pid: None,
                ..
            }
        ),
        "{err}"
    );
    // Locked by its creator: never taken, whatever its age.
    let c = CString::new(p.segment_name("blank")).unwrap();
    // SAFETY: libc calls on a valid C string; the descriptor is closed below.
    let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDONLY, 0) };
    assert!(fd >= 0);
    // SAFETY: flock on the descriptor just opened.
    assert_eq!(unsafe { libc::flock(fd, libc::LOCK_EX) }, 0);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let err = ShmSet::create(std::slice::from_ref(&cfg), &p).unwrap_err();
    assert!(matches!(err, ShmError::AlreadyExists { .. }), "{err}");
    // SAFETY: closing our own descriptor releases the lock.
    unsafe { libc::close(fd) };
    // Old and unlocked: abandoned, so the name is taken over.
    let set = ShmSet::create(std::slice::from_ref(&cfg), &p).unwrap();
    assert_eq!(set.get::<u8>("blank").unwrap().len(), 16);
}

#[test]
fn set_access_checks_names_and_types() {
    let p = TestPrefix::new();
    let cfgs = [
        ShmCfg::new::<f64>("x", 4).unwrap(),
        ShmCfg::new::<u8>("y", [2, 2]).unwrap(),
    ];
    let mut set = ShmSet::create(&cfgs, &p).unwrap();
    assert_eq!(set.names().collect::<Vec<_>>(), ["x", "y"]);
    assert!(matches!(
        set.get::<f64>("nope"),
        Err(ShmError::NoSuchArray { .. })
    ));
    assert!(matches!(
        set.get::<f32>("x"),
        Err(ShmError::TypeMismatch { .. })
    ));
    assert!(matches!(
        set.take::<u16>("y"),
        Err(ShmError::TypeMismatch { .. })
    ));
    assert_eq!(set.len(), 2, "a failed take leaves the set as it was");
    let y = set.take::<u8>("y").unwrap();
    assert_eq!(y.dims(), &[2, 2]);
    assert_eq!(set.len(), 1);
    drop(set);
    assert_eq!(p.leftovers().len(), 1, "the taken array lives on");
    drop(y);
    assert!(p.leftovers().is_empty());
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_views_have_the_dims() {
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<f64>("nd", [2, 3]).unwrap();
    let mut a = ShmArray::<f64>::create(&cfg, &p).unwrap();
    a.view_mut()[[1, 2]] = 4.0;
    assert_eq!(a[5], 4.0, "row-major");
    assert_eq!(a.view().shape(), &[2, 3]);
}
