//! The computation the tour spreads over processes: escape-time fractals, whose cost per
//! pixel varies a lot across the picture (good for showing load balancing).

/// Escape time of the Julia set of c = -0.8 + 0.156i at pixel (x, y), smoothed, in [0, 1].
pub(crate) fn julia(x: usize, y: usize, size: usize) -> f64 {
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
pub(crate) fn julia_rows(field: &mut [f64], size: usize, rows: std::ops::Range<usize>) {
    for y in rows {
        for x in 0..size {
            field[y * size + x] = julia(x, y, size);
        }
    }
}

/// Escape time of the Julia set of `c` at pixel (x, y) of a `size`-square view of
/// [-1.6, 1.6]^2, smoothed, in [0, 1].
pub(crate) fn julia_at(
    x: usize,
    y: usize,
    size: usize,
    (cr, ci): (f64, f64),
    max_iter: u32,
) -> f64 {
    let scale = 3.2 / size as f64;
    let (mut zr, mut zi) = (x as f64 * scale - 1.6, y as f64 * scale - 1.6);
    for i in 0..max_iter {
        let (r2, i2) = (zr * zr, zi * zi);
        if r2 + i2 > 16.0 {
            let smooth = f64::from(i) + 1.0 - ((r2 + i2).ln() / 2.0).ln() / std::f64::consts::LN_2;
            return (smooth / f64::from(max_iter)).sqrt();
        }
        zi = 2.0 * zr * zi + ci;
        zr = r2 - i2 + cr;
    }
    0.0
}
