//! The ptools tour: every facility that has landed, at work on one real computation, timed
//! against a sequential baseline, leaving nothing behind.
//!
//! ```text
//! cargo run --release --example tour                 # defaults: well under a minute on 2 cores
//! cargo run --release --example tour -- --size 2048  # a larger picture
//! ```
//!
//! Shared memory: this program starts a second copy of itself, which attaches to a shared
//! array by name and computes half of a Julia-set field while this process computes the
//! other half; this process then reads the whole field and writes it as a PNG picture.

mod png;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptools::shm::{Prefix, ShmArray, ShmCfg, ShmSet};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The argument that makes this program the second process of the shared-memory part.
const SHM_CHILD: &str = "--tour-shm-child";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SHM_CHILD) {
        return shm_child(&args[2..]);
    }
    let size = parse_size(&args)?;
    println!("ptools tour: {size} x {size} picture, {} cores\n", cores());
    let started = Instant::now();
    shared_memory_part(size)?;
    println!("\ntour done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn parse_size(args: &[String]) -> Result<usize, BoxError> {
    match args.iter().position(|a| a == "--size") {
        None => Ok(1024),
        Some(i) => {
            let v = args.get(i + 1).ok_or("--size needs a value")?;
            let n: usize = v.parse().map_err(|_| format!("--size {v}: not a number"))?;
            if !(16..=16384).contains(&n) {
                return Err(format!("--size {n}: choose 16 to 16384").into());
            }
            Ok(n)
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Escape time of the Julia set of c = -0.8 + 0.156i at pixel (x, y), smoothed, in [0, 1].
fn julia(x: usize, y: usize, size: usize) -> f64 {
    const MAX_ITER: u32 = 300;
    let scale = 3.0 / size as f64;
    let (mut zr, mut zi) = (x as f64 * scale - 1.5, y as f64 * scale - 1.5);
    let (cr, ci) = (-0.8, 0.156);
    for i in 0..MAX_ITER {
        let (r2, i2) = (zr * zr, zi * zi);
        if r2 + i2 > 16.0 {
            let smooth = f64::from(i) + 1.0 - ((r2 + i2).ln() / 2.0).ln() / std::f64::consts::LN_2;
            return (smooth / f64::from(MAX_ITER)).sqrt();
        }
        zi = 2.0 * zr * zi + ci;
        zr = r2 - i2 + cr;
    }
    0.0
}

/// Fills rows `rows` of a `size`-wide field.
fn julia_rows(field: &mut [f64], size: usize, rows: std::ops::Range<usize>) {
    for y in rows {
        for x in 0..size {
            field[y * size + x] = julia(x, y, size);
        }
    }
}

fn field_cfg(size: usize) -> Result<ShmCfg, BoxError> {
    Ok(ShmCfg::new::<f64>("julia", [size, size])?)
}

/// The second process: attach by name, compute the lower half, exit.
fn shm_child(args: &[String]) -> Result<(), BoxError> {
    let [prefix, size] = args else {
        return Err("usage: tour --tour-shm-child PREFIX SIZE".into());
    };
    let size: usize = size.parse()?;
    let mut field = ShmArray::<f64>::attach(&field_cfg(size)?, &Prefix::new(prefix.as_str())?)?;
    julia_rows(&mut field, size, size / 2..size);
    Ok(())
}

fn shared_memory_part(size: usize) -> Result<(), BoxError> {
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

    let rgb: Vec<u8> = field.iter().flat_map(|&v| png::colour(v)).collect();
    let path = picture_path("julia");
    png::write_rgb(&path, size as u32, size as u32, &rgb)?;
    println!("   picture: {}", path.display());
    drop(set); // unlinks the segment
    Ok(())
}

fn picture_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ptools-tour-{name}.png"))
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, BoxError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the second process timed out".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
