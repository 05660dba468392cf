//! What a handler sees inside its server task: [`TaskContext`] (who it is, its arrays)
//! and [`TaskLocalStorage`] (typed state kept between calls).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;

use ptools_shm::{ShmArray, ShmElem, ShmSet};

/// Typed state of one server task, kept between calls: PTools.jl's `task_local_storage`.
///
/// Values are keyed by name and may be of any `Send + 'static` type; a read with another
/// type than the one stored gives `None`, never a mis-typed value. Each STasks group has
/// its own storage on each worker, so two groups on the same workers never see each
/// other's state.
///
/// ```
/// use ptools_stasks::TaskLocalStorage;
/// let mut tls = TaskLocalStorage::new();
/// tls.set("calls", 0u64);
/// *tls.get_mut::<u64>("calls").unwrap() += 1;
/// assert_eq!(tls.get::<u64>("calls"), Some(&1));
/// assert_eq!(tls.get::<i32>("calls"), None); // another type
/// let names = tls.get_or_insert_with("names", Vec::<String>::new);
/// names.push("a".into());
/// assert_eq!(tls.remove::<Vec<String>>("names").unwrap(), ["a"]);
/// ```
#[derive(Default)]
pub struct TaskLocalStorage {
    map: HashMap<String, Box<dyn Any + Send>>,
}

impl TaskLocalStorage {
    /// An empty storage.
    pub fn new() -> TaskLocalStorage {
        TaskLocalStorage::default()
    }

    /// The value under `key`, if there is one of type `T`.
    pub fn get<T: Any>(&self, key: &str) -> Option<&T> {
        self.map.get(key)?.downcast_ref()
    }

    /// The value under `key`, mutably, if there is one of type `T`.
    pub fn get_mut<T: Any>(&mut self, key: &str) -> Option<&mut T> {
        self.map.get_mut(key)?.downcast_mut()
    }

    /// Stores `value` under `key`, replacing whatever was there (of any type).
    pub fn set<T: Any + Send>(&mut self, key: impl Into<String>, value: T) {
        self.map.insert(key.into(), Box::new(value));
    }

    /// The value under `key`, inserting `make()` first when there is none of type `T`
    /// (a value of another type under `key` is replaced).
    pub fn get_or_insert_with<T: Any + Send>(
        &mut self,
        key: impl Into<String>,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        use std::collections::hash_map::Entry;
        let slot = match self.map.entry(key.into()) {
            Entry::Occupied(e) => {
                let slot = e.into_mut();
                if !slot.is::<T>() {
                    *slot = Box::new(make());
                }
                slot
            }
            Entry::Vacant(e) => e.insert(Box::new(make())),
        };
        slot.downcast_mut()
            .expect("the slot holds a T: checked or just inserted")
    }

    /// Takes the value under `key` out, if it is of type `T` (otherwise it stays).
    pub fn remove<T: Any>(&mut self, key: &str) -> Option<T> {
        if !self.map.get(key)?.is::<T>() {
            return None;
        }
        let b = self.map.remove(key)?;
        // `is::<T>` was checked just above, under the same `&mut self`.
        b.downcast().ok().map(|b| *b)
    }

    /// Whether a value (of any type) is stored under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops every value.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

impl fmt::Debug for TaskLocalStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&str> = self.keys().collect();
        keys.sort_unstable();
        f.debug_struct("TaskLocalStorage")
            .field("keys", &keys)
            .finish()
    }
}

/// What a handler gets inside its server task: its index, its storage and the group's
/// arrays, mapped in this worker.
///
/// The storage and the mappings live in the worker from
/// [`start_stasks`](crate::start_stasks) to [`stop_stasks`](crate::stop_stasks); each call
/// of [`pmap_stasks`](crate::pmap_stasks) gets the same context back.
///
/// # Shared arrays
///
/// [`arrays_mut`](Self::arrays_mut) and [`array_mut`](Self::array_mut) give a `&mut` over
/// the *whole* of each array, exclusive in this worker only: the other tasks of the group
/// run at the same time, in other processes, over the same memory. The handlers must
/// keep ptools-shm's contract (its crate docs, "Safety model"): while one task writes an
/// element, no other task reads or writes it, and the master reads the results after
/// `pmap_stasks` has returned (its `array_mut` needs `&mut STasks`, which no running
/// `pmap` leaves). A data race here is undefined behaviour even for plain numbers; the
/// usual pattern is that task `i` writes only its own part (rows `i`, a share).
pub struct TaskContext {
    pub(crate) group: u64,
    pub(crate) task: usize,
    pub(crate) ntasks: usize,
    pub(crate) storage: TaskLocalStorage,
    pub(crate) arrays: ShmSet,
}

impl TaskContext {
    /// This task's index, `0..ntasks()` (the position of its worker in
    /// [`STasks::workers`](crate::STasks::workers)).
    pub fn task(&self) -> usize {
        self.task
    }

    /// The number of tasks in the group.
    pub fn ntasks(&self) -> usize {
        self.ntasks
    }

    /// The group's id, unique within the master process.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// The id of the worker this task runs on (`ptools_workerset::myid()`).
    pub fn myid(&self) -> usize {
        ptools_workerset::myid()
    }

    /// The task-local storage.
    pub fn storage(&self) -> &TaskLocalStorage {
        &self.storage
    }

    /// The task-local storage, mutably.
    pub fn storage_mut(&mut self) -> &mut TaskLocalStorage {
        &mut self.storage
    }

    /// The value under `key` in the storage, if it is a `T`; see [`TaskLocalStorage::get`].
    pub fn get<T: Any>(&self, key: &str) -> Option<&T> {
        self.storage.get(key)
    }

    /// See [`TaskLocalStorage::get_mut`].
    pub fn get_mut<T: Any>(&mut self, key: &str) -> Option<&mut T> {
        self.storage.get_mut(key)
    }

    /// See [`TaskLocalStorage::set`].
    pub fn set<T: Any + Send>(&mut self, key: impl Into<String>, value: T) {
        self.storage.set(key, value);
    }

    /// See [`TaskLocalStorage::get_or_insert_with`].
    pub fn get_or_insert_with<T: Any + Send>(
        &mut self,
        key: impl Into<String>,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        self.storage.get_or_insert_with(key, make)
    }

    /// The group's arrays, mapped in this worker (see [Shared arrays](Self#shared-arrays)).
    pub fn arrays(&self) -> &ShmSet {
        &self.arrays
    }

    /// The group's arrays, mutably: exclusive in this worker, not across the group's tasks
    /// (see [Shared arrays](Self#shared-arrays)).
    pub fn arrays_mut(&mut self) -> &mut ShmSet {
        &mut self.arrays
    }

    /// The array `name` (PTools.jl's `task_local_storage(:name)`).
    ///
    /// # Errors
    ///
    /// `ShmError::NoSuchArray`, or `ShmError::TypeMismatch` for another element type.
    pub fn array<T: ShmElem>(&self, name: &str) -> ptools_shm::Result<&ShmArray<T>> {
        self.arrays.get(name)
    }

    /// The array `name`, mutably: exclusive in this worker, not across the group's tasks
    /// (see [Shared arrays](Self#shared-arrays)).
    ///
    /// # Errors
    ///
    /// As [`array`](Self::array).
    pub fn array_mut<T: ShmElem>(&mut self, name: &str) -> ptools_shm::Result<&mut ShmArray<T>> {
        self.arrays.get_mut(name)
    }

    /// The storage and the arrays at once, both mutable (for a handler that updates its
    /// state while writing an array).
    pub fn split_mut(&mut self) -> (&mut TaskLocalStorage, &mut ShmSet) {
        (&mut self.storage, &mut self.arrays)
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("group", &self.group)
            .field("task", &self.task)
            .field("ntasks", &self.ntasks)
            .field("storage", &self.storage)
            .field("arrays", &self.arrays)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::TaskLocalStorage;

    #[test]
    fn get_or_insert_with_replaces_another_type_and_keeps_its_own() {
        let mut s = TaskLocalStorage::new();
        s.set("k", "text");
        assert_eq!(*s.get_or_insert_with("k", || 5u32), 5);
        *s.get_or_insert_with("k", || 0u32) += 1;
        assert_eq!(s.get::<u32>("k"), Some(&6));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn remove_with_the_wrong_type_leaves_the_value() {
        let mut s = TaskLocalStorage::new();
        s.set("k", 1.5f64);
        assert_eq!(s.remove::<u64>("k"), None);
        assert!(s.contains("k"));
        assert_eq!(s.remove::<f64>("k"), Some(1.5));
        assert!(s.is_empty());
        assert_eq!(s.remove::<f64>("k"), None);
    }

    #[test]
    fn keys_clear_and_debug() {
        let mut s = TaskLocalStorage::new();
        s.set("b", 1u8);
        s.set("a", vec![1u8]);
        let mut keys: Vec<_> = s.keys().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(format!("{s:?}"), r#"TaskLocalStorage { keys: ["a", "b"] }"#);
        s.clear();
        assert!(s.is_empty());
    }
}
