//! Named POSIX shared-memory typed N-d arrays (being written).
