//! Part 2, pfork: forked children render the Mandelbrot set straight into a shared array
//! (`pfork_shm`), then fan out again with `pfork` to measure the picture, each child
//! returning its share of the statistics.
//!
//! This part runs before any worker is started: pfork refuses, by default, to fork a
//! process that has other threads (the worker runtime keeps one), since a child of a
//! multi-threaded process may only do async-signal-safe work.

use std::time::Instant;

use ptools::fork::{pfork, pfork_shm};
use ptools::shm::ShmCfg;

use crate::{BoxError, cores, picture};

const MAX_ITER: u32 = 1000;

/// Escape time of the Mandelbrot set at pixel (x, y), smoothed, in [0, 1]; 0 inside.
fn mandelbrot(x: usize, y: usize, w: usize, h: usize) -> f64 {
    let (cx, cy) = (
        -2.2 + 3.0 * x as f64 / w as f64,
        -1.5 + 3.0 * y as f64 / h as f64,
    );
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for i in 0..MAX_ITER {
        let (r2, i2) = (zr * zr, zi * zi);
        if r2 + i2 > 256.0 {
            let smooth = f64::from(i) + 1.0 - ((r2 + i2).ln() / 2.0).ln() / std::f64::consts::LN_2;
            return (smooth / f64::from(MAX_ITER)).sqrt().min(1.0);
        }
        zi = 2.0 * zr * zi + cy;
        zr = r2 - i2 + cx;
    }
    0.0
}

fn render_row(row: &mut [u8], y: usize, w: usize, h: usize) {
    for x in 0..w {
        row[3 * x..3 * x + 3].copy_from_slice(&picture::colour(mandelbrot(x, y, w, h)));
    }
}

pub(crate) fn run(size: usize) -> Result<(), BoxError> {
    let n = cores().max(2);
    let (w, h) = (size, size);
    println!("\n2. pfork: {n} forked children render the Mandelbrot set into shared memory");

    let t = Instant::now();
    let mut baseline = vec![0u8; w * h * 3];
    for (y, row) in baseline.chunks_mut(w * 3).enumerate() {
        render_row(row, y, w, h);
    }
    let sequential = t.elapsed();

    let t = Instant::now();
    let cfgs = [ShmCfg::new::<u8>("mandelbrot", [h, w, 3])?];
    // Child i renders rows i, i + n, ...: interleaving balances rows of very uneven cost.
    let set = pfork_shm(&cfgs, n, |i, set| {
        let pixels = set
            .get_mut::<u8>("mandelbrot")
            .expect("the set holds the array it was made from");
        for y in (i..h).step_by(n) {
            render_row(&mut pixels[y * w * 3..(y + 1) * w * 3], y, w, h);
        }
    })?;
    let forked = t.elapsed();
    let image = set.get::<u8>("mandelbrot")?;
    let same = image[..] == baseline[..];
    println!(
        "   sequential {:.0} ms, {n} children {:.0} ms ({:.2}x); identical: {same}",
        sequential.as_secs_f64() * 1e3,
        forked.as_secs_f64() * 1e3,
        sequential.as_secs_f64() / forked.as_secs_f64()
    );
    if !same {
        return Err("the children's picture differs from the sequential one".into());
    }

    // A second fan-out reads the shared picture (inherited by fork, nothing copied in) and
    // returns each child's share of the statistics: pixels inside the set, per band.
    let t = Instant::now();
    let band = h.div_ceil(n);
    let inside: Vec<u64> = pfork(n, |i| {
        let rows = (i * band).min(h)..((i + 1) * band).min(h);
        image[rows.start * w * 3..rows.end * w * 3]
            .chunks(3)
            .filter(|p| *p == [0, 0, 0])
            .count() as u64
    })?;
    let total: u64 = inside.iter().sum();
    println!(
        "   pfork({n}) counted {total} pixels inside the set ({:.1}%), per child {inside:?}, in {:.1} ms",
        100.0 * total as f64 / (w * h) as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
    let path = picture::path("mandelbrot");
    picture::write_rgb(&path, w as u32, h as u32, image)?;
    println!("   picture: {}", path.display());
    drop(set); // unlinks the segment
    Ok(())
}
