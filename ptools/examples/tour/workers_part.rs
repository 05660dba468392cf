//! Part 3, workers: worker processes render a fractal band by band through a `WorkerSet`.
//! The bands cost very different amounts (the fractal's body is dense), so a first-free
//! set, which hands each band to whichever worker is free, beats round-robin.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use ptools::workerset::{Mode, RemoteRef, SharedSlice, WorkerSet, addprocs, rmprocs};

use crate::fractal::julia_at;
use crate::{BoxError, cores, picture};

const C: (f64, f64) = (-0.7269, 0.1889);
const MAX_ITER: u32 = 600;
const BANDS: usize = 64;

/// One band of rows, as RGB bytes: the remote function (a plain `fn`, argument a tuple).
/// A `SharedSlice` rather than a `Vec`: a band of 64 KiB or more (`--size 1200` and up)
/// is read by the master where the worker wrote it, in the worker's shared memory; a
/// smaller one, or one from a TCP worker (part 6), arrives as a `Vec` of its own.
pub(crate) fn render_band((size, y0, y1): (usize, usize, usize)) -> SharedSlice<u8> {
    let mut rgb = Vec::with_capacity((y1 - y0) * size * 3);
    for y in y0..y1 {
        for x in 0..size {
            rgb.extend_from_slice(&picture::colour(julia_at(x, y, size, C, MAX_ITER)));
        }
    }
    rgb.into()
}

/// The whole picture rendered band by band in this process.
pub(crate) fn render_here(size: usize) -> Vec<u8> {
    bands(size)
        .into_iter()
        .flat_map(|b| render_band(b).into_vec())
        .collect()
}

pub(crate) fn bands(size: usize) -> Vec<(usize, usize, usize)> {
    let step = size.div_ceil(BANDS);
    (0..size)
        .step_by(step)
        .map(|y0| (size, y0, (y0 + step).min(size)))
        .collect()
}

/// Sends every band to `set`, collects them in order, showing progress.
pub(crate) fn render_with(set: &WorkerSet, size: usize) -> Result<(Vec<u8>, Duration), BoxError> {
    let t = Instant::now();
    let refs: Vec<RemoteRef<SharedSlice<u8>>> = bands(size)
        .into_iter()
        .map(|b| set.remotecall(render_band, b))
        .collect::<Result<_, _>>()?;
    let total = refs.len();
    let mut picture = Vec::with_capacity(size * size * 3);
    // On a terminal one line counts up; in a log, a mark every quarter.
    let live = std::io::stdout().is_terminal();
    print!("   {:?}:", set.mode());
    for (done, r) in refs.into_iter().enumerate() {
        picture.extend_from_slice(&r.fetch()?);
        let done = done + 1;
        if live {
            print!("\r   {:?}: {done}/{total} bands", set.mode());
        } else if done % (total / 4).max(1) == 0 {
            print!(" {done}/{total}");
        }
        std::io::stdout().flush()?;
    }
    Ok((picture, t.elapsed()))
}

pub(crate) fn run(size: usize) -> Result<(), BoxError> {
    let n = cores().max(2);
    println!("\n3. workers: {n} worker processes render a fractal in {BANDS} bands");

    let t = Instant::now();
    let baseline = render_here(size);
    let sequential = t.elapsed();

    let t = Instant::now();
    let ids = addprocs(n)?;
    println!(
        "   started workers {ids:?} in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let result = (|| -> Result<(), BoxError> {
        for mode in [Mode::RoundRobin, Mode::FirstFree] {
            let set = WorkerSet::with_mode(&ids, mode)?;
            let (picture, took) = render_with(&set, size)?;
            println!(
                " in {:.0} ms ({:.2}x the sequential {:.0} ms); identical: {}",
                took.as_secs_f64() * 1e3,
                sequential.as_secs_f64() / took.as_secs_f64(),
                sequential.as_secs_f64() * 1e3,
                picture == baseline
            );
            if picture != baseline {
                return Err("the workers' picture differs from the sequential one".into());
            }
        }
        Ok(())
    })();
    // Stop the workers whatever happened above.
    rmprocs(&ids)?;
    result?;
    let path = picture::path("workers");
    picture::write_rgb(&path, size as u32, size as u32, &baseline)?;
    println!("   picture: {}", path.display());
    Ok(())
}
