//! Part 1, shared memory: a second process attaches to a shared array by name and computes
//! half of a Julia-set field while this process computes the other half.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptools::shm::{Prefix, ShmArray, ShmCfg, ShmSet};

use crate::fractal::julia_rows;
use crate::{BoxError, picture, wait_with_timeout};

/// The argument that makes the tour the second process of this part.
pub(crate) const SHM_CHILD: &str = "--tour-shm-child";

fn field_cfg(size: usize) -> Result<ShmCfg, BoxError> {
    Ok(ShmCfg::new::<f64>("julia", [size, size])?)
}

/// The second process: attach by name, compute the lower half, exit.
pub(crate) fn shm_child(args: &[String]) -> Result<(), BoxError> {
    let [prefix, size] = args else {
        return Err("usage: tour --tour-shm-child PREFIX SIZE".into());
    };
    let size: usize = size.parse()?;
    let mut field = ShmArray::<f64>::attach(&field_cfg(size)?, &Prefix::new(prefix.as_str())?)?;
    julia_rows(&mut field, size, size / 2..size);
    Ok(())
}

pub(crate) fn run(size: usize) -> Result<(), BoxError> {
    println!("1. shared memory: two processes fill one {size} x {size} f64 array");

    let t = Instant::now();
    let mut baseline = vec![0.0; size * size];
    julia_rows(&mut baseline, size, 0..size);
    let sequential = t.elapsed();

    let t = Instant::now();
    let prefix = Prefix::job();
    let cfgs = [field_cfg(size)?];
    let mut set = ShmSet::create(&cfgs, &prefix)?;
    let field = set.get_mut::<f64>("julia")?;
    println!(
        "   created {} ({:.1} MiB, pages reserved)",
        field.segment_name(),
        (size * size * 8) as f64 / (1 << 20) as f64
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args([SHM_CHILD, prefix.as_str(), &size.to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    // The upper half here, the lower half there, at the same time.
    julia_rows(field, size, 0..size / 2);
    let status = wait_with_timeout(&mut child, Duration::from_secs(300))?;
    if !status.success() {
        return Err(format!("the second process failed: {status}").into());
    }
    let parallel = t.elapsed();

    let same = field.iter().zip(&baseline).all(|(a, b)| a == b);
    println!(
        "   second process (pid {}) attached by name and wrote rows {}..{}",
        child.id(),
        size / 2,
        size
    );
    println!(
        "   sequential {:.0} ms, two processes {:.0} ms ({:.2}x); identical to the sequential result: {same}",
        sequential.as_secs_f64() * 1e3,
        parallel.as_secs_f64() * 1e3,
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    if !same {
        return Err("the shared array differs from the sequential result".into());
    }

    let rgb: Vec<u8> = field.iter().flat_map(|&v| picture::colour(v)).collect();
    let path = picture::path("julia");
    picture::write_rgb(&path, size as u32, size as u32, &rgb)?;
    println!("   picture: {}", path.display());
    drop(set); // unlinks the segment
    Ok(())
}
