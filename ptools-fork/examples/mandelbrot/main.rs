//! Renders a Mandelbrot image with `pfork_shm` (children write rows straight into one shared
//! array), writes it as a PNG file into the system's temp directory, and prints the path and
//! the time against the same image computed sequentially.
//!
//! ```text
//! cargo run --release -p ptools-fork --example mandelbrot [width height children]
//! ```

use std::time::Instant;

mod demo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let (width, height, children) = match args[..] {
        [w, h, c] => (w, h, c),
        [] => (1600, 1200, cores),
        _ => return Err("usage: mandelbrot [width height children]".into()),
    };

    let start = Instant::now();
    let sequential = demo::mandelbrot_sequential(width, height);
    let t_seq = start.elapsed();

    let start = Instant::now();
    let image = demo::mandelbrot(width, height, children)?;
    let t_fork = start.elapsed();
    assert_eq!(
        &image[..],
        &sequential[..],
        "pfork_shm and sequential images differ"
    );

    let path = std::env::temp_dir().join("ptools-mandelbrot.png");
    demo::write_png(&path, width, height, &image)?;
    println!(
        "wrote {} ({width}x{height}, grey-scale PNG)",
        path.display()
    );
    println!(
        "sequential: {:.1} ms; pfork_shm with {children} children: {:.1} ms (speed-up {:.2}x, {cores} cores)",
        t_seq.as_secs_f64() * 1e3,
        t_fork.as_secs_f64() * 1e3,
        t_seq.as_secs_f64() / t_fork.as_secs_f64()
    );
    Ok(())
}
