//! shm benches (being written).
fn main() {}
