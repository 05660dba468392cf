//! Part 4, server tasks: long-running tasks on the workers keep a shared frame mapped and
//! their own state between calls. Each call renders the task's rows of one frame of an
//! animated Julia set straight into the shared array; each task counts in its task-local
//! storage how many pixels it has rendered so far.

use std::time::Instant;

use ptools::shm::{Prefix, ShmCfg};
use ptools::stasks::{self, TaskContext};
use ptools::workerset::rmprocs;

use crate::fractal::julia_at;
use crate::{BoxError, picture};

const FRAMES: usize = 6;

/// The Julia parameter of frame `f`: c walks along a small circle.
fn c_of(frame: usize) -> (f64, f64) {
    let a = std::f64::consts::TAU * frame as f64 / FRAMES as f64;
    (-0.8 + 0.06 * a.cos(), 0.156 + 0.06 * a.sin())
}

fn render_row(row: &mut [u8], y: usize, size: usize, frame: usize) {
    for x in 0..size {
        row[3 * x..3 * x + 3].copy_from_slice(&picture::colour(julia_at(
            x,
            y,
            size,
            c_of(frame),
            400,
        )));
    }
}

/// The server-task handler: rows task, task + ntasks, ... of frame `frame`.
fn render_frame(ctx: &mut TaskContext, (size, frame): (usize, usize)) -> u64 {
    let (task, ntasks) = (ctx.task(), ctx.ntasks());
    let image = ctx
        .array_mut::<u8>("frame")
        .expect("the group maps the frame");
    let mut rows = 0;
    for y in (task..size).step_by(ntasks) {
        render_row(&mut image[y * size * 3..(y + 1) * size * 3], y, size, frame);
        rows += 1;
    }
    // Task-local state, kept across calls.
    let total = ctx.get_or_insert_with("pixels", || 0u64);
    *total += rows * size as u64;
    *total
}

pub(crate) fn run(size: usize) -> Result<(), BoxError> {
    println!("\n4. server tasks: one task per worker renders {FRAMES} frames into a shared array");

    let t = Instant::now();
    let mut baseline = vec![0u8; size * size * 3];
    for frame in 0..FRAMES {
        for (y, row) in baseline.chunks_mut(size * 3).enumerate() {
            render_row(row, y, size, frame);
        }
    }
    let sequential = t.elapsed();

    let t = Instant::now();
    let cfgs = [ShmCfg::new::<u8>("frame", [size, size, 3])?];
    // With no workers running, start one per core in the default cluster: asked for here,
    // since `start_stasks` alone would refuse (`Error::NoWorkers`).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut tasks = stasks::STasks::builder()
        .addprocs_if_none(cores)
        .start(&cfgs, &Prefix::job())?;
    let n = stasks::count_stasks(&tasks);
    let workers = tasks.workers().to_vec();
    let result = (|| -> Result<(), BoxError> {
        let mut totals = Vec::new();
        for frame in 0..FRAMES {
            totals = stasks::pmap_stasks(&tasks, render_frame, vec![(size, frame); n])?;
        }
        let parallel = t.elapsed();
        let image = tasks.array::<u8>("frame")?;
        let same = image[..] == baseline[..];
        println!(
            "   {n} tasks on workers {workers:?}; sequential {:.0} ms, server tasks {:.0} ms \
             (start-up included, {:.2}x); last frame identical: {same}",
            sequential.as_secs_f64() * 1e3,
            parallel.as_secs_f64() * 1e3,
            sequential.as_secs_f64() / parallel.as_secs_f64()
        );
        println!("   pixels rendered per task, kept in task-local storage: {totals:?}");
        if !same {
            return Err("the server tasks' frame differs from the sequential one".into());
        }
        let path = picture::path("stasks");
        picture::write_rgb(&path, size as u32, size as u32, image)?;
        println!("   picture: {}", path.display());
        Ok(())
    })();
    // Stop the tasks (unlinks the frame) and the workers they started, whatever happened.
    stasks::stop_stasks(&mut tasks)?;
    rmprocs(&workers)?;
    result
}
