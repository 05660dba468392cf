//! The tour's pictures: compressed PNG files (the `png` crate), each under a name unique to
//! the run, so a second run (or CI) never overwrites the first one's pictures.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::BoxError;

/// `<temp dir>/ptools-tour-<run>-<name>.png`, `<run>` being this run's start time (UTC
/// seconds) and process id: unique to the run.
pub(crate) fn path(name: &str) -> PathBuf {
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{secs}-{}", std::process::id())
    });
    std::env::temp_dir().join(format!("ptools-tour-{run}-{name}.png"))
}

/// Writes `rgb` (`width * height * 3` bytes, row by row) as a compressed PNG file. The file
/// must not exist yet: a picture of another run is never overwritten.
pub(crate) fn write_rgb(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), BoxError> {
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(format!("{} bytes for a {width}x{height} RGB picture", rgb.len()).into());
    }
    let file = std::fs::File::create_new(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(())
}

/// A smooth colour map from `t` in [0, 1] to RGB.
pub(crate) fn colour(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let r = 9.0 * (1.0 - t) * t * t * t;
    let g = 15.0 * (1.0 - t) * (1.0 - t) * t * t;
    let b = 8.5 * (1.0 - t) * (1.0 - t) * (1.0 - t) * t;
    [(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]
}
