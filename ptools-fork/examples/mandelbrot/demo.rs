//! The example's computation: a Mandelbrot image rendered by forked children straight
//! into one shared array ([`pfork_shm`]), written as a compressed PNG file a person can open.

use std::io;
use std::path::Path;

use ptools_shm::{ShmArray, ShmCfg};

use ptools_fork::{PforkError, pfork_shm};

/// Iterations before a point counts as inside the set.
const MAX_ITER: u32 = 255;

/// Renders a `width` x `height` grey-scale Mandelbrot image with `children` forked children,
/// each computing every `children`-th row (interleaved rows balance the work: rows through
/// the set cost the most) straight into a shared array. Returns that array, dims
/// `[height, width]`, row-major; its segment is unlinked when it is dropped.
///
/// # Errors
///
/// As [`pfork_shm`]; [`PforkError::InvalidArgument`] for a zero width,
/// height or number of children.
pub(crate) fn mandelbrot(
    width: usize,
    height: usize,
    children: usize,
) -> Result<ShmArray<u8>, PforkError<()>> {
    if width == 0 || height == 0 || children == 0 {
        return Err(PforkError::InvalidArgument(
            "width, height and children must be at least 1",
        ));
    }
    let cfgs = [ShmCfg::new::<u8>("mandelbrot", [height, width])?];
    let mut set = pfork_shm(&cfgs, children, |i, set| {
        let Ok(pixels) = set.get_mut::<u8>("mandelbrot") else {
            // Cannot happen: the set holds this array. Fail the child visibly if it does.
            panic!("the shared image is missing");
        };
        for y in (i..height).step_by(children) {
            render_row(&mut pixels[y * width..(y + 1) * width], y, width, height);
        }
    })?;
    Ok(set.take::<u8>("mandelbrot")?)
}

/// The same image computed in this process, one row after another: the baseline that
/// [`mandelbrot`] is timed against.
pub(crate) fn mandelbrot_sequential(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = vec![0; width * height];
    for (y, row) in pixels.chunks_mut(width.max(1)).enumerate() {
        render_row(row, y, width, height);
    }
    pixels
}

/// Renders row `y` of the image: the region -2.5..1 x -1.25..1.25 of the complex plane.
fn render_row(row: &mut [u8], y: usize, width: usize, height: usize) {
    let ci = -1.25 + 2.5 * (y as f64 + 0.5) / height as f64;
    for (x, pixel) in row.iter_mut().enumerate() {
        let cr = -2.5 + 3.5 * (x as f64 + 0.5) / width as f64;
        let (mut zr, mut zi, mut n) = (0.0_f64, 0.0_f64, 0);
        while n < MAX_ITER && zr * zr + zi * zi <= 4.0 {
            (zr, zi) = (zr * zr - zi * zi + cr, 2.0 * zr * zi + ci);
            n += 1;
        }
        // Inside the set: black; outside: light where points escape at once, darker the longer
        // they take, so the filaments near the boundary show (the square root spreads the
        // few slow points over the greys).
        *pixel = if n == MAX_ITER {
            0
        } else {
            255 - (255.0 * (f64::from(n) / f64::from(MAX_ITER)).sqrt()) as u8
        };
    }
}

/// Writes an 8-bit grey-scale PNG file (`pixels` row-major, `width` x `height`),
/// compressed with the `png` crate.
///
/// # Errors
///
/// I/O and encoding errors; `InvalidInput` if `pixels` is not `width * height` bytes or a
/// side does not fit PNG's 31 bits.
pub(crate) fn write_png(path: &Path, width: usize, height: usize, pixels: &[u8]) -> io::Result<()> {
    let invalid = |msg| io::Error::new(io::ErrorKind::InvalidInput, msg);
    if pixels.len() != width * height || width == 0 || height == 0 {
        return Err(invalid("pixels must hold width * height bytes"));
    }
    let w = u32::try_from(width).map_err(|_| invalid("width too large"))?;
    let h = u32::try_from(height).map_err(|_| invalid("height too large"))?;
    let file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    writer.write_image_data(pixels).map_err(io::Error::other)?;
    writer.finish().map_err(io::Error::other)
}
