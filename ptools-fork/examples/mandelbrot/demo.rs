//! The example's computation: a Mandelbrot image rendered by forked children straight
//! into one shared array ([`pfork_shm`]), and a small PNG writer so a person can open it.

use std::io::{self, Write};
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

/// Writes an 8-bit grey-scale PNG file (`pixels` row-major, `width` x `height`). The image
/// data is stored uncompressed (deflate "stored" blocks), which every PNG reader accepts and
/// needs no compression library.
///
/// # Errors
///
/// I/O errors; `InvalidInput` if `pixels` is not `width * height` bytes or a side does not
/// fit PNG's 31 bits.
pub(crate) fn write_png(path: &Path, width: usize, height: usize, pixels: &[u8]) -> io::Result<()> {
    let invalid = |msg| io::Error::new(io::ErrorKind::InvalidInput, msg);
    if pixels.len() != width * height || width == 0 || height == 0 {
        return Err(invalid("pixels must hold width * height bytes"));
    }
    let w = u32::try_from(width).map_err(|_| invalid("width too large"))?;
    let h = u32::try_from(height).map_err(|_| invalid("height too large"))?;

    // Raw scanlines: a filter byte (0, none) before each row.
    let mut raw = Vec::with_capacity((width + 1) * height);
    for row in pixels.chunks(width) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    // zlib stream of stored deflate blocks (RFC 1950, RFC 1951 section 3.2.4).
    let mut zlib = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65_535).peekable();
    while let Some(block) = blocks.next() {
        zlib.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    // Bit depth 8, colour type 0 (grey), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);

    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"\x89PNG\r\n\x1a\n")?;
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &zlib[..]),
        (b"IEND", &[][..]),
    ] {
        let len = u32::try_from(data.len()).map_err(|_| invalid("image too large"))?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(kind)?;
        out.write_all(data)?;
        out.write_all(&crc32(kind, data).to_be_bytes())?;
    }
    out.flush()
}

/// CRC-32 (ISO 3309, as PNG uses it) of `kind` followed by `data`.
fn crc32(kind: &[u8], data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    let mut crc = !0u32;
    for &b in kind.iter().chain(data) {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Adler-32 checksum (RFC 1950) of `data`.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}
