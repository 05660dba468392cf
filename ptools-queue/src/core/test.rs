//! Unit tests of the queue core, and a property test of its dispatch order against a
//! simple model (a list scanned in full).

use proptest::prelude::*;

use super::{Bucket, Core, Prio};

fn p(x: f64) -> Prio {
    Prio::new(x).unwrap()
}

#[test]
fn lower_priority_first_ties_in_submission_order() {
    let mut c = Core::default();
    c.push(0, Bucket::Any, p(1.0), "a");
    c.push(1, Bucket::Any, p(0.0), "b");
    c.push(2, Bucket::Any, p(1.0), "c");
    c.push(3, Bucket::Any, p(-0.0), "d");
    let order: Vec<_> = std::iter::from_fn(|| c.pop_for(2).map(|e| e.payload)).collect();
    assert_eq!(order, ["b", "d", "a", "c"]);
    assert_eq!(c.len(), 0);
}

#[test]
fn nan_is_not_a_priority_but_infinities_are() {
    assert!(Prio::new(f64::NAN).is_none());
    assert!(p(f64::NEG_INFINITY) < p(-1e300));
    assert!(p(1e300) < p(f64::INFINITY));
}

#[test]
fn workers_take_only_what_targets_them() {
    let mut c = Core::default();
    c.push(0, Bucket::ids(vec![3]), p(0.0), 0);
    c.push(1, Bucket::ids(vec![2, 3]), p(1.0), 1);
    c.push(2, Bucket::Any, p(2.0), 2);
    assert_eq!(c.pop_for(2).unwrap().payload, 1);
    assert_eq!(c.pop_for(2).unwrap().payload, 2);
    assert!(c.pop_for(2).is_none());
    assert_eq!(c.pop_for(3).unwrap().payload, 0);
    assert!(c.pop_for(3).is_none());
}

#[test]
fn requeue_keeps_the_place_among_equals() {
    let mut c = Core::default();
    c.push(0, Bucket::Any, p(0.0), 0);
    c.push(1, Bucket::Any, p(0.0), 1);
    let (place, payload) = c.pop_for(2).unwrap().split();
    c.requeue(place, payload);
    assert_eq!(c.pop_for(2).unwrap().payload, 0);
}

#[test]
fn remove_task_removes_all_its_parts() {
    let mut c = Core::default();
    c.push(7, Bucket::ids(vec![2]), p(0.0), 0);
    c.push(7, Bucket::ids(vec![3]), p(0.0), 1);
    c.push(8, Bucket::Any, p(0.0), 2);
    assert!(c.has_task(7));
    assert_eq!(c.priority(7), Some(0.0));
    assert_eq!(c.remove_task(7).len(), 2);
    assert!(!c.has_task(7));
    assert!(c.remove_task(7).is_empty());
    assert_eq!(c.pop_for(3).unwrap().payload, 2);
}

#[test]
fn set_priorities_is_all_or_nothing() {
    let mut c = Core::default();
    for i in 0..10u64 {
        c.push(i, Bucket::Any, p(i as f64), i);
    }
    let r = c.set_priorities(|e, _| if e.task == 5 { f64::NAN } else { 0.0 });
    assert_eq!(r.map_err(|(t, _)| t), Err(5));
    assert_eq!(c.pop_for(2).unwrap().payload, 0);
    assert_eq!(c.pop_for(2).unwrap().payload, 1);
    c.set_priorities(|_, cur| -cur).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| c.pop_for(2).map(|e| e.payload)).collect();
    assert_eq!(order, [9, 8, 7, 6, 5, 4, 3, 2]);
}

#[test]
fn set_priority_moves_one_task() {
    let mut c = Core::default();
    c.push(0, Bucket::Any, p(0.0), 0);
    c.push(1, Bucket::Any, p(0.0), 1);
    assert!(c.set_priority(1, p(-1.0)));
    assert!(!c.set_priority(9, p(-1.0)));
    assert_eq!(c.priority(1), Some(-1.0));
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
        c.push(i, b, p(0.0), i);
    }
    let gone: Vec<_> = c
        .remove_where(|e| e.payload < 2)
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(gone.len(), 2);
    let dead: Vec<_> = c
        .remove_unservable(|b| *b == Bucket::Any)
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(dead, [3, 5]);
    let order: Vec<_> = std::iter::from_fn(|| c.pop_for(2).map(|e| e.payload)).collect();
    assert_eq!(order, [2, 4]);
    assert_eq!(c.len(), 0);
}

/// An operation on the queue, for the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Queue a task for a target (0: any; k: workers whose bit k-1 is set) at a priority.
    Push(u8, i8),
    /// Worker 2, 3 or 4 takes its best task.
    Pop(usize),
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
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..8, -3i8..4).prop_map(|(t, p)| Op::Push(t, p)),
        3 => (2usize..5).prop_map(Op::Pop),
        1 => (0usize..64).prop_map(Op::Remove),
        1 => (-2i8..3).prop_map(Op::Reprioritise),
        1 => (0usize..64, -3i8..4).prop_map(|(n, p)| Op::SetOne(n, p)),
        1 => (0u64..5).prop_map(Op::RemoveWhere),
        1 => (2usize..5).prop_map(Op::PopRequeue),
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
        let mut pushed = 0u64;
        for op in ops {
            match op {
                Op::Push(t, prio) => {
                    let b = bucket(t);
                    core.push(pushed, b.clone(), p(f64::from(prio)), pushed);
                    model.items.push((f64::from(prio), model.seq, pushed, b));
                    model.seq += 1;
                    pushed += 1;
                }
                Op::Pop(w) => {
                    let got = core.pop_for(w).map(|e| e.payload);
                    prop_assert_eq!(got, model.pop_for(w));
                }
                Op::Remove(n) => {
                    if pushed > 0 {
                        let t = n as u64 % pushed;
                        let got = core.remove_task(t).len();
                        let before = model.items.len();
                        model.items.retain(|i| i.2 != t);
                        prop_assert_eq!(got, before - model.items.len());
                    }
                }
                Op::SetOne(n, prio) => {
                    if pushed > 0 {
                        let t = n as u64 % pushed;
                        let hit = core.set_priority(t, p(f64::from(prio)));
                        let mut found = false;
                        for i in model.items.iter_mut().filter(|i| i.2 == t) {
                            i.0 = f64::from(prio);
                            found = true;
                        }
                        prop_assert_eq!(hit, found);
                    }
                }
                Op::RemoveWhere(r) => {
                    let mut got: Vec<u64> = core
                        .remove_where(|e| e.task % 5 == r)
                        .into_iter()
                        .map(|e| e.payload)
                        .collect();
                    got.sort_unstable();
                    let mut want: Vec<u64> =
                        model.items.iter().filter(|i| i.2 % 5 == r).map(|i| i.2).collect();
                    want.sort_unstable();
                    model.items.retain(|i| i.2 % 5 != r);
                    prop_assert_eq!(got, want);
                }
                Op::PopRequeue(w) => {
                    if let Some(e) = core.pop_for(w) {
                        let (place, payload) = e.split();
                        core.requeue(place, payload);
                    }
                }
                Op::Reprioritise(a) => {
                    let f = |cur: f64, task: u64| (cur * f64::from(a) + task as f64).rem_euclid(7.0);
                    core.set_priorities(|e, cur| f(cur, e.task)).unwrap();
                    for i in &mut model.items {
                        i.0 = f(i.0, i.2) + 0.0; // -0.0 + 0.0 is 0.0, as Prio stores it
                    }
                }
            }
            prop_assert_eq!(core.len(), model.items.len());
        }
        for w in 2..5 {
            loop {
                let got = core.pop_for(w).map(|e| e.payload);
                prop_assert_eq!(got, model.pop_for(w));
                if got.is_none() {
                    break;
                }
            }
        }
        prop_assert_eq!(core.len(), 0);
    }
}

/// Prints how long the core's bulk operations take on 100 000 entries (run by hand in
/// release mode with `--ignored --nocapture`; no assertion on time).
#[test]
#[ignore]
fn core_timing() {
    let mut c = Core::default();
    let t0 = std::time::Instant::now();
    for i in 0..100_000u64 {
        c.push(i, Bucket::Any, p(i as f64), i);
    }
    eprintln!("push 100k: {:?}", t0.elapsed());
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        c.set_priorities(|_, cur| -cur).unwrap();
        eprintln!("set_priorities 100k: {:?}", t0.elapsed());
    }
    let t0 = std::time::Instant::now();
    c.rebuild_buckets();
    eprintln!("rebuild_buckets 100k: {:?}", t0.elapsed());
    for n in [1_000u64, 10_000, 100_000] {
        let mut c = Core::default();
        for i in 0..n {
            c.push(i, Bucket::Any, p(i as f64), i);
        }
        let t0 = std::time::Instant::now();
        let mut x = 0.0;
        for k in 0..100_000u64 {
            x = (x + 7919.0) % n as f64;
            c.push(n + k, Bucket::Any, p(x), k);
            c.remove_task(n + k);
        }
        eprintln!(
            "push + remove_task at {n}: {:?} each",
            t0.elapsed() / 100_000
        );
    }
}
