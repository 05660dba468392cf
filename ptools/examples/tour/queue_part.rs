//! Part 5, queued tasks: the tiles of a picture go through a priority queue, nearest a
//! focus point first, with a callback assembling each tile as it comes back; halfway
//! through, the focus moves and every queued tile's priority is recomputed. Then a task
//! pinned to a host, one for every worker, and a remote panic that is just an outcome.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ptools::queue::{self, QueuedWorkerTask, Target};
use ptools::workerset::{addprocs, myid, rmprocs};

use crate::fractal::julia_at;
use crate::{BoxError, cores, picture};

const TILES: usize = 16; // per side
const C: (f64, f64) = (0.285, 0.013);

/// The remote function: one tile (size, tile x, tile y) as RGB bytes.
fn render_tile((size, tx, ty): (usize, usize, usize)) -> Vec<u8> {
    let side = size / TILES;
    let mut rgb = Vec::with_capacity(side * side * 3);
    for y in ty * side..(ty + 1) * side {
        for x in tx * side..(tx + 1) * side {
            rgb.extend_from_slice(&picture::colour(julia_at(x, y, size, C, 800)));
        }
    }
    rgb
}

fn whoami(_: ()) -> (usize, u32) {
    (myid(), std::process::id())
}

fn unlucky(x: u64) -> u64 {
    assert!(x != 13, "13 is unlucky");
    x
}

fn distance((tx, ty): (usize, usize), (fx, fy): (usize, usize)) -> f64 {
    ((tx.abs_diff(fx).pow(2) + ty.abs_diff(fy).pow(2)) as f64).sqrt()
}

pub(crate) fn run(size: usize) -> Result<(), BoxError> {
    let size = size / TILES * TILES;
    let n = cores().max(2);
    println!("\n5. queued tasks: {n} workers render {TILES}x{TILES} tiles by priority");
    let ids = addprocs(n)?;
    let result = tiles(size, &ids);
    rmprocs(&ids)?;
    result
}

fn tiles(size: usize, ids: &[usize]) -> Result<(), BoxError> {
    let q = queue::default_queue();
    queue::prep_remotes()?;
    let host = q.remotes()[0].hostname.clone();
    println!("   {} workers on host {host}", queue::num_remotes());

    let side = size / TILES;
    let canvas = Arc::new(Mutex::new(vec![0u8; size * size * 3]));
    let order = Arc::new(Mutex::new(Vec::new()));
    let first_focus = (TILES / 4, TILES / 4);
    let t = Instant::now();
    q.pause(); // queue everything first, so the priorities decide the order
    for ty in 0..TILES {
        for tx in 0..TILES {
            let (canvas, order) = (canvas.clone(), order.clone());
            let done = move |(_, tx, ty): (usize, usize, usize), r: queue::Result<Vec<u8>>| {
                let Ok(rgb) = r else { return };
                let mut p = canvas.lock().unwrap_or_else(|e| e.into_inner());
                for (row, line) in rgb.chunks(side * 3).enumerate() {
                    let at = ((ty * side + row) * size + tx * side) * 3;
                    p[at..at + side * 3].copy_from_slice(line);
                }
                order
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((tx, ty));
            };
            let task = QueuedWorkerTask::new((size, tx, ty), render_tile, done, Target::Any)
                .priority(distance((tx, ty), first_focus));
            queue::queue_worker_task(task)?;
        }
    }
    q.resume();
    let quarter = TILES * TILES / 4;
    while order.lock().unwrap_or_else(|e| e.into_inner()).len() < quarter {
        if t.elapsed() > Duration::from_secs(120) {
            return Err("the first quarter of the tiles took over 2 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The viewer looks elsewhere: recompute the priority of every queued tile.
    let second_focus = (TILES - 1, TILES - 1);
    let t_prio = Instant::now();
    queue::set_priorities(|_target, task, _current| {
        task.data::<(usize, usize, usize)>()
            .map_or(f64::MAX, |&(_, tx, ty)| distance((tx, ty), second_focus))
    })?;
    let reprioritised = t_prio.elapsed();

    // One task pinned to the host, one on every worker, and a remote panic.
    let (id, pid) = queue::execute_worker_task(QueuedWorkerTask::without_callback(
        (),
        whoami,
        host.as_str(),
    ))?;
    println!("   a task pinned to {host} ran on worker {id} (pid {pid})");
    let everyone = Arc::new(Mutex::new(Vec::new()));
    let seen = everyone.clone();
    queue::queue_worker_task(QueuedWorkerTask::new(
        (),
        whoami,
        move |_, r: queue::Result<(usize, u32)>| {
            if let Ok((id, _)) = r {
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(id);
            }
        },
        Target::All,
    ))?;
    let unlucky = QueuedWorkerTask::without_callback(13, unlucky, Target::Any).priority(-1.0);
    if let Err(e) = queue::execute_worker_task(unlucky) {
        println!("   a remote panic is just an outcome: {e}");
    }

    if !q.wait_idle_timeout(Duration::from_secs(300)) {
        return Err("the queue did not drain in 5 minutes".into());
    }
    let order = order.lock().unwrap_or_else(|e| e.into_inner());
    let mut everyone = everyone.lock().unwrap_or_else(|e| e.into_inner()).clone();
    everyone.sort_unstable();
    println!(
        "   {} tiles in {:.0} ms; priorities of the queued tiles recomputed in {:.2} ms",
        order.len(),
        t.elapsed().as_secs_f64() * 1e3,
        reprioritised.as_secs_f64() * 1e3
    );
    println!(
        "   first tiles {:?} (focus {first_focus:?}); last tiles {:?} (focus then {second_focus:?})",
        &order[..4],
        &order[order.len() - 4..]
    );
    println!("   the all-workers task ran on {everyone:?} (workers {ids:?})");
    println!("   {:?}", q.counts());
    let path = picture::path("queue");
    let mut canvas = canvas.lock().unwrap_or_else(|e| e.into_inner());
    shade_by_order(&mut canvas, size, &order[..], [first_focus, second_focus]);
    picture::write_rgb(&path, size as u32, size as u32, &canvas)?;
    println!(
        "   picture: {} (tiles tinted by the order they came back: bright first, dark last; \
         the two foci framed)",
        path.display()
    );
    Ok(())
}

/// Makes the order visible in the picture: each tile is tinted from bright yellow (came
/// back first) to dark blue (last), half and half with the fractal, and the tiles of the
/// two foci get a white frame.
fn shade_by_order(
    rgb: &mut [u8],
    size: usize,
    order: &[(usize, usize)],
    foci: [(usize, usize); 2],
) {
    let side = size / TILES;
    let last = order.len().saturating_sub(1).max(1) as f64;
    for (rank, &(tx, ty)) in order.iter().enumerate() {
        let t = rank as f64 / last;
        let tint = [
            (255.0 * (1.0 - t) + 20.0 * t) as u8,
            (220.0 * (1.0 - t) + 30.0 * t) as u8,
            (40.0 * (1.0 - t) + 120.0 * t) as u8,
        ];
        let framed = foci.contains(&(tx, ty));
        for y in 0..side {
            for x in 0..side {
                let at = ((ty * side + y) * size + tx * side + x) * 3;
                let edge = x < 2 || y < 2 || x + 2 >= side || y + 2 >= side;
                for c in 0..3 {
                    rgb[at + c] = if framed && edge {
                        255
                    } else {
                        ((u16::from(rgb[at + c]) + u16::from(tint[c])) / 2) as u8
                    };
                }
            }
        }
    }
}
