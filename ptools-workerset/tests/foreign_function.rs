//! A function that does not lie in the executable's own code (here: one of a `dlopen`ed
//! library) is refused with a typed error before anything is sent; fn items and closures
//! that capture nothing still go through.

ptools_workerset::enable_test_support!();

use ptools_workerset::{Cluster, Error, Mode, WorkerSet};

fn square(x: u64) -> u64 {
    x * x
}

/// The address of `cos` in `libm.so.6`, loaded at run time: code outside the executable.
fn foreign_address() -> usize {
    // SAFETY: dlopen and dlsym with NUL-terminated names; the library stays loaded (the
    // handle is never closed), so the address stays mapped for the whole test.
    let addr = unsafe {
        let lib = libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!lib.is_null(), "libm.so.6 could not be loaded");
        libc::dlsym(lib, c"cos".as_ptr())
    };
    assert!(!addr.is_null(), "cos not found in libm.so.6");
    addr as usize
}

#[test]
fn a_function_of_a_loaded_library_is_a_typed_error() {
    let addr = foreign_address();
    // SAFETY: the pointer is never called, here or anywhere: it is only handed to the
    // remote-call functions, which must refuse it (by its address) before any call is
    // made or anything is sent. Were it called, it would be UB (`cos` is an
    // `extern "C" fn(f64) -> f64`); that is exactly what the check prevents.
    let foreign: fn(u64) -> u64 = unsafe { std::mem::transmute::<usize, fn(u64) -> u64>(addr) };

    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    for id in [ids[0], 1] {
        match c.remotecall(id, foreign, 3) {
            Err(Error::ForeignFunction { addr: a }) => assert_eq!(a, addr),
            other => panic!("expected ForeignFunction on {id}, got {other:?}"),
        }
    }
    let e = c.remotecall_fetch(ids[0], foreign, 3).unwrap_err();
    assert!(matches!(e, Error::ForeignFunction { .. }));
    assert_eq!(
        e.to_string(),
        format!("function at {addr:#x} is not in the executable's own code")
    );

    let set = WorkerSet::with_cluster(&c, &ids, Mode::RoundRobin).unwrap();
    assert!(matches!(
        set.remotecall(foreign, 3),
        Err(Error::ForeignFunction { .. })
    ));
    assert!(matches!(
        set.pmap(foreign, 0..10u64),
        Err(Error::ForeignFunction { .. })
    ));

    // The worker is untouched and serves fn items and non-capturing closures as before.
    assert_eq!(c.remotecall_fetch(ids[0], square, 7).unwrap(), 49);
    assert_eq!(c.remotecall_fetch(ids[0], |x: u64| x + 1, 7).unwrap(), 8);
    assert_eq!(c.remotecall_fetch(1, square, 5).unwrap(), 25);
    assert_eq!(set.pmap(|x: u64| x * 3, 0..4u64).unwrap(), [0, 3, 6, 9]);
}
