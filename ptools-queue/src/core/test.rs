//! Unit tests of the queue core, and a property test of its dispatch order against a
//! simple model (a list scanned in full).

use proptest::prelude::*;

use super::{Bucket, Core, Prio, TaskKey, TaskState};

fn p(x: f64) -> Prio {
    Prio::new(x).unwrap()
}

/// Queues a one-entry task.
fn push1<T>(c: &mut Core<T>, b: Bucket, prio: f64, payload: T) -> TaskKey {
    let k = c.new_task();
    c.push(k, b, p(prio), payload);
    k
}

/// Takes every entry worker `w` may run, in order, finishing each.
fn pop_all<T>(c: &mut Core<T>, w: usize) -> Vec<T> {
    std::iter::from_fn(|| {
        let e = c.pop_for(w)?;
        c.finish(e.task);
        Some(e.payload)
    })
    .collect()
}

#[test]
fn lower_priority_first_ties_in_submission_order() {
    let mut c = Core::default();
    push1(&mut c, Bucket::Any, 1.0, "a");
    push1(&mut c, Bucket::Any, 0.0, "b");
    push1(&mut c, Bucket::Any, 1.0, "c");
    push1(&mut c, Bucket::Any, -0.0, "d");
    assert_eq!(pop_all(&mut c, 2), ["b", "d", "a", "c"]);
    assert_eq!(c.len(), 0);
}

#[test]
fn nan_is_not_a_priority_but_infinities_are() {
    assert!(Prio::new(f64::NAN).is_none());
    assert!(p(f64::NEG_INFINITY) < p(-1e300));
    assert!(p(1e300) < p(f64::INFINITY));
}

#[test]
fn priority_keys_sort_as_priorities() {
    let xs = [
        f64::NEG_INFINITY,
        -1e300,
        -2.5,
        -1.0,
        -f64::MIN_POSITIVE,
        0.0,
        f64::MIN_POSITIVE,
        1.0,
        1.5,
        1e300,
        f64::INFINITY,
    ];
    for w in xs.windows(2) {
        assert!(p(w[0]).key() < p(w[1]).key(), "{} {}", w[0], w[1]);
    }
    for x in xs {
        assert_eq!(Prio::from_key(p(x).key()).get().to_bits(), x.to_bits());
    }
    assert_eq!(p(-0.0).key(), p(0.0).key());
}

#[test]
fn workers_take_only_what_targets_them() {
    let mut c = Core::default();
    push1(&mut c, Bucket::ids(vec![3]), 0.0, 0);
    push1(&mut c, Bucket::ids(vec![2, 3]), 1.0, 1);
    push1(&mut c, Bucket::Any, 2.0, 2);
    assert_eq!(c.pop_for(2).unwrap().payload, 1);
    assert_eq!(c.pop_for(2).unwrap().payload, 2);
    assert!(c.pop_for(2).is_none());
    assert_eq!(c.pop_for(3).unwrap().payload, 0);
    assert!(c.pop_for(3).is_none());
}

#[test]
fn requeue_keeps_the_place_among_equals() {
    let mut c = Core::default();
    let k = push1(&mut c, Bucket::Any, 0.0, 0);
    push1(&mut c, Bucket::Any, 0.0, 1);
    let (place, payload) = c.pop_for(2).unwrap().split();
    assert_eq!(c.task_state(k), TaskState::Running);
    c.requeue(place, payload);
    assert_eq!(c.task_state(k), TaskState::Queued);
    assert_eq!(c.pop_for(2).unwrap().payload, 0);
}

#[test]
fn remove_task_removes_all_its_parts() {
    let mut c = Core::default();
    let k7 = c.new_task();
    c.push(k7, Bucket::ids(vec![2]), p(0.0), 0);
    c.push(k7, Bucket::ids(vec![3]), p(0.0), 1);
    push1(&mut c, Bucket::Any, 0.0, 2);
    assert_eq!(c.task_state(k7), TaskState::Queued);
    assert_eq!(c.priority(k7), Some(0.0));
    let gone: Vec<_> = c.remove_task(k7).into_iter().map(|e| e.payload).collect();
    assert_eq!(gone, [0, 1]);
    assert_eq!(c.task_state(k7), TaskState::Gone);
    assert!(c.remove_task(k7).is_empty());
    assert_eq!(c.pop_for(3).unwrap().payload, 2);
}

#[test]
fn a_task_runs_until_all_its_parts_finish() {
    let mut c = Core::default();
    let k = c.new_task();
    c.push(k, Bucket::ids(vec![2]), p(0.0), 0);
    c.push(k, Bucket::ids(vec![3]), p(0.0), 1);
    let a = c.pop_for(2).unwrap();
    assert_eq!(c.task_state(k), TaskState::Queued, "one part still queued");
    let b = c.pop_for(3).unwrap();
    assert_eq!(c.task_state(k), TaskState::Running);
    c.finish(a.task);
    assert_eq!(c.task_state(k), TaskState::Running);
    c.finish(b.task);
    assert_eq!(c.task_state(k), TaskState::Gone);
}

#[test]
fn an_ended_tasks_key_does_not_reach_the_task_reusing_its_slot() {
    let mut c = Core::default();
    let old = push1(&mut c, Bucket::Any, 0.0, 0);
    let e = c.pop_for(2).unwrap();
    c.finish(e.task);
    let new = push1(&mut c, Bucket::Any, 0.0, 1);
    assert_eq!(new.slot, old.slot, "the slot is reused");
    assert_ne!(new.n, old.n);
    assert_eq!(c.task_state(old), TaskState::Gone);
    assert!(c.remove_task(old).is_empty());
    assert_eq!(c.priority(old), None);
    assert!(!c.set_priority(old, p(5.0)));
    assert_eq!(c.task_state(new), TaskState::Queued);
    assert_eq!(c.priority(new), Some(0.0));
    assert!(c.issued(old.n) && c.issued(new.n) && !c.issued(new.n + 1));
}

#[test]
fn set_priorities_is_all_or_nothing() {
    let mut c = Core::default();
    for i in 0..10u64 {
        push1(&mut c, Bucket::Any, i as f64, i);
    }
    let r = c.set_priorities(|e, _| if e.task.n == 5 { f64::NAN } else { 0.0 });
    assert_eq!(r.map_err(|(t, _)| t), Err(5));
    assert_eq!(c.pop_for(2).unwrap().payload, 0);
    assert_eq!(c.pop_for(2).unwrap().payload, 1);
    c.set_priorities(|_, cur| -cur).unwrap();
    assert_eq!(pop_all(&mut c, 2), [9, 8, 7, 6, 5, 4, 3, 2]);
}

#[test]
fn set_priority_moves_one_task() {
    let mut c = Core::default();
    push1(&mut c, Bucket::Any, 0.0, 0);
    let k1 = push1(&mut c, Bucket::Any, 0.0, 1);
    let k9 = TaskKey { n: 9, slot: 9 };
    assert!(c.set_priority(k1, p(-1.0)));
    assert!(!c.set_priority(k9, p(-1.0)));
    assert_eq!(c.priority(k1), Some(-1.0));
    assert_eq!(c.pop_for(2).unwrap().payload, 1);
}

#[test]
fn remove_where_and_unservable() {
    let mut c = Core::default();
    for i in 0..6u64 {
        let b = if i % 2 == 0 {
            Bucket::Any
        } else {
            Bucket::ids(vec![4])
        };
        push1(&mut c, b, 0.0, i);
    }
    let gone: Vec<_> = c
        .remove_where(|e| e.payload < 2)
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(gone, [0, 1]);
    let dead: Vec<_> = c
        .remove_unservable(|b| *b == Bucket::Any)
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(dead, [3, 5]);
    assert_eq!(pop_all(&mut c, 2), [2, 4]);
    assert_eq!(c.len(), 0);
}

/// A pseudo-random number from `i` (a multiplicative hash).
fn mix(i: u64) -> u64 {
    (i ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17
}

#[test]
fn fifo_among_equal_priorities_across_100k_entries() {
    let mut c = Core::default();
    let n = 100_000u64;
    let mut got = Vec::with_capacity(n as usize);
    for i in 0..n {
        push1(&mut c, Bucket::Any, 1.5, i);
        // Take some while filling, as the feeders do, so that slots are reused.
        if mix(i).is_multiple_of(3) {
            let e = c.pop_for(2).unwrap();
            c.finish(e.task);
            got.push(e.payload);
        }
    }
    got.extend(pop_all(&mut c, 2));
    assert!(got.iter().copied().eq(0..n));
}

#[test]
fn set_priorities_orders_by_the_new_priority_then_submission() {
    for n in [100u64, 100_000] {
        let mut c = Core::default();
        for i in 0..n {
            let b = if i % 10 == 0 {
                Bucket::ids(vec![2])
            } else {
                Bucket::Any
            };
            push1(&mut c, b, (mix(i) % 50) as f64, i);
        }
        // Many ties, negative and positive values, fractions.
        let new = |i: u64| (mix(i + 7) % 300) as f64 / 4.0 - 30.0;
        let mut calls = 0u64;
        c.set_priorities(|e, _| {
            calls += 1;
            new(e.payload)
        })
        .unwrap();
        assert_eq!(calls, n, "one call per entry");
        let mut want: Vec<u64> = (0..n).collect();
        want.sort_by(|&a, &b| new(a).total_cmp(&new(b)).then(a.cmp(&b)));
        assert_eq!(pop_all(&mut c, 2), want, "n = {n}");
        // And back: the reverse, then the identity (already in order).
        for i in 0..n {
            push1(&mut c, Bucket::Any, i as f64, i);
        }
        c.set_priorities(|_, cur| -cur).unwrap();
        c.set_priorities(|_, cur| cur).unwrap();
        assert!(pop_all(&mut c, 2).into_iter().eq((0..n).rev()));
    }
}

#[test]
fn dequeue_in_the_middle_and_in_bulk() {
    let mut c = Core::default();
    let keys: Vec<TaskKey> = (0..1000u64)
        .map(|i| push1(&mut c, Bucket::Any, 0.0, i))
        .collect();
    let gone = c.remove_task(keys[500]);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].payload, 500);
    assert_eq!(c.task_state(keys[500]), TaskState::Gone);
    // Few: one by one; many: the trees rebuilt. Both in submission order.
    let few: Vec<u64> = c
        .remove_where(|e| e.payload % 100 == 7)
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(few, (0..10).map(|k| k * 100 + 7).collect::<Vec<_>>());
    let many: Vec<u64> = c
        .remove_where(|e| e.payload % 2 == 1)
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        many,
        (0..1000)
            .filter(|i| i % 2 == 1 && i % 100 != 7)
            .collect::<Vec<_>>()
    );
    let rest: Vec<u64> = (0..1000).filter(|i| i % 2 == 0 && *i != 500).collect();
    assert_eq!(c.len(), rest.len());
    assert_eq!(pop_all(&mut c, 2), rest);
}

#[test]
fn drain_returns_submission_order() {
    let mut c = Core::default();
    for i in 0..3000u64 {
        let b = if i % 3 == 0 {
            Bucket::ids(vec![2])
        } else {
            Bucket::Any
        };
        push1(&mut c, b, (mix(i) % 7) as f64, i);
    }
    // Take and put back some: their slots change, their sequence numbers do not.
    for _ in 0..100 {
        let (place, payload) = c.pop_for(2).unwrap().split();
        c.requeue(place, payload);
    }
    let drained = c.drain();
    assert!(!drained.in_order);
    let all: Vec<u64> = drained.into_seq_order().map(|e| e.payload).collect();
    assert!(all.into_iter().eq(0..3000));
    assert_eq!(c.len(), 0);
    // Filled in order, some taken: the entries are read as they are stored.
    for i in 0..3000u64 {
        push1(&mut c, Bucket::Any, (mix(i) % 7) as f64, i);
    }
    for _ in 0..100 {
        let e = c.pop_for(2).unwrap();
        c.finish(e.task);
    }
    let drained = c.drain();
    assert!(drained.in_order);
    let all: Vec<u64> = drained.into_seq_order().map(|e| e.payload).collect();
    assert_eq!(all.len(), 2900);
    assert!(all.is_sorted());
}

/// An operation on the queue, for the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Queue a task for a target (0: any; k: workers whose bit k-1 is set) at a priority.
    Push(u8, i8),
    /// Queue an all-workers task: one part pinned to each of workers 2, 3 and 4.
    PushAll(i8),
    /// Worker 2, 3 or 4 takes its best task, and the task ends at once.
    Pop(usize),
    /// Worker 2, 3 or 4 takes its best task, which runs until a `Finish`.
    PopHold(usize),
    /// The oldest held task ends.
    Finish,
    /// Remove the task pushed `n`-th (modulo the pushes so far).
    Remove(usize),
    /// Set every priority to `(priority * a + task) mod 7`.
    Reprioritise(i8),
    /// Set the priority of the task pushed `n`-th.
    SetOne(usize, i8),
    /// Remove every task whose number is `r` modulo 5.
    RemoveWhere(u64),
    /// Worker `w` takes its best task and puts it back (a feeder that could not send).
    PopRequeue(usize),
    /// Workers 3 and 4 are gone: their entries, and those only they could run, go.
    Unservable,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, -3i8..4).prop_map(|(t, p)| Op::Push(t, p)),
        1 => (-3i8..4).prop_map(Op::PushAll),
        3 => (2usize..5).prop_map(Op::Pop),
        1 => (2usize..5).prop_map(Op::PopHold),
        1 => Just(Op::Finish),
        1 => (0usize..64).prop_map(Op::Remove),
        1 => (-2i8..3).prop_map(Op::Reprioritise),
        1 => (0usize..64, -3i8..4).prop_map(|(n, p)| Op::SetOne(n, p)),
        1 => (0u64..5).prop_map(Op::RemoveWhere),
        1 => (2usize..5).prop_map(Op::PopRequeue),
        1 => Just(Op::Unservable),
    ]
}

/// The model: a list of (priority, sequence, task, bucket), scanned in full.
#[derive(Default)]
struct Model {
    items: Vec<(f64, u64, u64, Bucket)>,
    seq: u64,
}

impl Model {
    fn pop_for(&mut self, w: usize) -> Option<u64> {
        let i = (0..self.items.len())
            .filter(|&i| self.items[i].3.admits(w))
            .min_by(|&a, &b| {
                let (x, y) = (&self.items[a], &self.items[b]);
                x.0.total_cmp(&y.0).then(x.1.cmp(&y.1))
            })?;
        Some(self.items.remove(i).2)
    }

    fn push(&mut self, prio: i8, task: u64, b: Bucket) {
        self.items.push((f64::from(prio), self.seq, task, b));
        self.seq += 1;
    }
}

fn bucket(t: u8) -> Bucket {
    if t == 0 {
        Bucket::Any
    } else {
        Bucket::ids(
            (0..3)
                .filter(|k| t & (1 << k) != 0)
                .map(|k| k + 2)
                .collect(),
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dispatch_order_matches_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut core = Core::default();
        let mut model = Model::default();
        // Every task's key, by number; the parts held running (task numbers).
        let mut keys: Vec<TaskKey> = Vec::new();
        let mut held: Vec<TaskKey> = Vec::new();
        for op in ops {
            let pushed = keys.len() as u64;
            match op {
                Op::Push(t, prio) => {
                    let b = bucket(t);
                    let k = core.new_task();
                    prop_assert_eq!(k.n, pushed);
                    core.push(k, b.clone(), p(f64::from(prio)), pushed);
                    model.push(prio, pushed, b);
                    keys.push(k);
                }
                Op::PushAll(prio) => {
                    let k = core.new_task();
                    for w in 2..5 {
                        core.push(k, Bucket::ids(vec![w]), p(f64::from(prio)), pushed);
                        model.push(prio, pushed, Bucket::ids(vec![w]));
                    }
                    keys.push(k);
                }
                Op::Pop(w) => {
                    let e = core.pop_for(w);
                    if let Some(e) = &e {
                        core.finish(e.task);
                    }
                    prop_assert_eq!(e.map(|e| e.payload), model.pop_for(w));
                }
                Op::PopHold(w) => {
                    let e = core.pop_for(w);
                    if let Some(e) = &e {
                        held.push(e.task);
                    }
                    prop_assert_eq!(e.map(|e| e.payload), model.pop_for(w));
                }
                Op::Finish => {
                    if !held.is_empty() {
                        core.finish(held.remove(0));
                    }
                }
                Op::Remove(n) => {
                    if pushed > 0 {
                        let t = n as u64 % pushed;
                        let got = core.remove_task(keys[t as usize]).len();
                        let before = model.items.len();
                        model.items.retain(|i| i.2 != t);
                        prop_assert_eq!(got, before - model.items.len());
                    }
                }
                Op::SetOne(n, prio) => {
                    if pushed > 0 {
                        let t = n as u64 % pushed;
                        let hit = core.set_priority(keys[t as usize], p(f64::from(prio)));
                        let mut found = false;
                        for i in model.items.iter_mut().filter(|i| i.2 == t) {
                            i.0 = f64::from(prio);
                            found = true;
                        }
                        prop_assert_eq!(hit, found);
                    }
                }
                Op::RemoveWhere(r) => {
                    let got: Vec<u64> = core
                        .remove_where(|e| e.task.n % 5 == r)
                        .into_iter()
                        .map(|e| e.payload)
                        .collect();
                    // In submission order.
                    let want: Vec<u64> = {
                        let mut v: Vec<_> = model.items.iter().filter(|i| i.2 % 5 == r).collect();
                        v.sort_by_key(|i| i.1);
                        v.into_iter().map(|i| i.2).collect()
                    };
                    model.items.retain(|i| i.2 % 5 != r);
                    prop_assert_eq!(got, want);
                }
                Op::PopRequeue(w) => {
                    if let Some(e) = core.pop_for(w) {
                        let (place, payload) = e.split();
                        core.requeue(place, payload);
                    }
                }
                Op::Unservable => {
                    let alive = |b: &Bucket| b.admits(2);
                    let got: Vec<u64> = core
                        .remove_unservable(alive)
                        .into_iter()
                        .map(|e| e.payload)
                        .collect();
                    let want: Vec<u64> = {
                        let mut v: Vec<_> = model.items.iter().filter(|i| !alive(&i.3)).collect();
                        v.sort_by_key(|i| i.1);
                        v.into_iter().map(|i| i.2).collect()
                    };
                    model.items.retain(|i| alive(&i.3));
                    prop_assert_eq!(got, want);
                }
                Op::Reprioritise(a) => {
                    let f = |cur: f64, task: u64| (cur * f64::from(a) + task as f64).rem_euclid(7.0);
                    core.set_priorities(|e, cur| f(cur, e.task.n)).unwrap();
                    for i in &mut model.items {
                        i.0 = f(i.0, i.2) + 0.0; // -0.0 + 0.0 is 0.0, as Prio stores it
                    }
                }
            }
            prop_assert_eq!(core.len(), model.items.len());
            // Every task's state: queued while the model holds a part, running while a
            // part is held, else gone (its slot may serve another task by now).
            for (t, &k) in keys.iter().enumerate() {
                let want = if model.items.iter().any(|i| i.2 == t as u64) {
                    TaskState::Queued
                } else if held.contains(&k) {
                    TaskState::Running
                } else {
                    TaskState::Gone
                };
                prop_assert_eq!(core.task_state(k), want, "task {}", t);
            }
        }
        let mut rest: Vec<(u64, u64)> = model.items.iter().map(|i| (i.1, i.2)).collect();
        rest.sort_unstable();
        let drained = core.drain();
        prop_assert_eq!(drained.len(), model.items.len());
        let drained: Vec<u64> = drained.into_seq_order().map(|e| e.payload).collect();
        prop_assert_eq!(drained, rest.into_iter().map(|r| r.1).collect::<Vec<_>>());
        prop_assert_eq!(core.len(), 0);
        // Held parts still run; they end as usual (a task once all its parts have).
        while let Some(k) = held.pop() {
            prop_assert_eq!(core.task_state(k), TaskState::Running);
            core.finish(k);
            let want = if held.contains(&k) { TaskState::Running } else { TaskState::Gone };
            prop_assert_eq!(core.task_state(k), want);
        }
    }
}

/// Prints how long the core's bulk operations take on 10^4 to 10^6 entries (run by hand
/// in release mode with `--ignored --nocapture`; no assertion on time).
#[test]
#[ignore]
fn core_timing() {
    for n in [10_000u64, 100_000, 1_000_000] {
        let mut c = Core::default();
        let t0 = std::time::Instant::now();
        for i in 0..n {
            push1(&mut c, Bucket::Any, i as f64, i);
        }
        let per = |t0: std::time::Instant| t0.elapsed() / n as u32;
        eprintln!("n = {n}: push {:?} each", per(t0));
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            c.set_priorities(|_, cur| -cur).unwrap();
            eprintln!("n = {n}: set_priorities (reverse) {:?} each", per(t0));
        }
        let t0 = std::time::Instant::now();
        c.drain().into_seq_order().for_each(drop);
        eprintln!("n = {n}: drain {:?} each", per(t0));
    }
    for n in [1_000u64, 10_000, 100_000] {
        let mut c = Core::default();
        for i in 0..n {
            push1(&mut c, Bucket::Any, i as f64, i);
        }
        let t0 = std::time::Instant::now();
        let mut x = 0.0;
        for k in 0..100_000u64 {
            x = (x + 7919.0) % n as f64;
            let t = push1(&mut c, Bucket::Any, x, k);
            c.remove_task(t);
        }
        eprintln!(
            "push + remove_task at {n}: {:?} each",
            t0.elapsed() / 100_000
        );
    }
}
