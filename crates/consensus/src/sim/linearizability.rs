//! A linearizability checker for recorded histories of one object.
//!
//! A history is linearizable if every operation can be given a single instant
//! between its call and its return such that running the operations one at a
//! time, in the order of those instants, through a sequential [`Model`] yields
//! exactly the outputs that were observed. This is the property a raft-backed
//! store promises its clients, so it is what the simulation checks.
//!
//! The search is Wing & Gong's: repeatedly pick an operation that may come next
//! (no other pending operation returned before it was called), step the model,
//! and backtrack when an observed output disagrees. Two things keep it fast:
//!
//! - Memoisation (Lowe): the rest of the search depends only on *which*
//!   operations are linearized and the model state, so each (set, state) pair
//!   is explored once.
//! - Operations that cannot have changed the state given what they returned
//!   (reads, failed compare-and-swaps) are linearized greedily as soon as they
//!   fit; see [`Model::observes_only`].
//!
//! Operations whose outcome is unknown (the client gave up, or the server said
//! "maybe") have no return: they may take effect at any point after their call,
//! or never, and the search is free to choose either. A caller that knows more
//! (the simulation can see which log entries were applied) may instead say an
//! operation took effect by some time without knowing its output, which spares
//! the search the "or never" branch.
//!
//! The checker handles one object. Linearizability is compositional (Herlihy &
//! Wing), so a key/value store is checked key by key, which keeps each search
//! small.

use std::collections::HashSet;
use std::fmt::{Debug, Write as _};
use std::hash::Hash;

/// The sequential specification of an object.
pub(crate) trait Model {
    /// The object's state; part of the memoisation key, so keep it small.
    type State: Clone + Eq + Hash + Debug;
    /// What an operation asks for.
    type Input: Debug;
    /// What an operation returns.
    type Output: PartialEq + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Apply `input` to `state`: the next state and the output.
    fn step(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);

    /// True if an operation that returned `output` cannot have changed the state,
    /// whatever state it ran in. Such an operation can be linearized the moment it
    /// fits without losing any solution (it constrains nothing later), which cuts
    /// the search down a lot for read-heavy histories. Wrongly answering `true`
    /// makes the checker unsound, so the default is `false`.
    fn observes_only(&self, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (input, output);
        false
    }
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome<O> {
    /// Returned `output` at time `at` (strictly after the call).
    Returned { at: u64, output: O },
    /// Took effect no later than `by` (strictly after the call); the output
    /// was never seen.
    TookEffect { by: u64 },
    /// No answer: it may have taken effect at any time after its call, or never.
    Unknown,
}

/// One operation of a history. Times are any totally ordered stamps shared by
/// the whole history; only their order matters.
#[derive(Debug, Clone)]
pub(crate) struct Operation<I, O> {
    pub(crate) call: u64,
    pub(crate) input: I,
    pub(crate) outcome: Outcome<O>,
}

/// What a successful check cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Distinct (linearized set, state) pairs visited.
    pub(crate) explored: u64,
}

/// Why a history was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckError<S> {
    /// Operation `op` returned (or took effect) no later than it was called.
    Malformed { op: usize },
    /// No linearization exists. `longest` is the longest order of operations
    /// that the search could linearize (indexes into the history) and `state`
    /// the model state after it: the operations that could not follow it are
    /// where the history goes wrong.
    NotLinearizable {
        longest: Vec<usize>,
        state: S,
        explored: u64,
    },
    /// The search visited more than the budget allowed without deciding.
    GaveUp { explored: u64 },
}

/// A set of operation indexes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
}

/// One level of the depth-first search: a linearized set and the operations
/// that may come next (with the state each leads to).
struct Frame<S> {
    linearized: Bits,
    /// Operations in `linearized` that had to be (not `Unknown`).
    returned_done: usize,
    children: Vec<(usize, S)>,
    next: usize,
}

/// Check `history` against `model`, visiting at most `budget` search states.
pub(crate) fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: u64,
) -> Result<Checked, CheckError<M::State>> {
    for (i, op) in history.iter().enumerate() {
        if let Outcome::Returned { at, .. } | Outcome::TookEffect { by: at } = op.outcome {
            if at <= op.call {
                return Err(CheckError::Malformed { op: i });
            }
        }
    }
    let search = Search::new(model, history);
    search.run(budget)
}

struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    /// Operation indexes in call order.
    by_call: Vec<usize>,
    /// Return (or took-effect-by) time of each operation; `u64::MAX` for
    /// unknown outcomes.
    ret: Vec<u64>,
    /// How many operations must be linearized (all but the unknown ones).
    must: usize,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, history: &'a [Operation<M::Input, M::Output>]) -> Self {
        let mut by_call: Vec<usize> = (0..history.len()).collect();
        by_call.sort_by_key(|&i| (history[i].call, i));
        let ret: Vec<u64> = history
            .iter()
            .map(|op| match op.outcome {
                Outcome::Returned { at, .. } | Outcome::TookEffect { by: at } => at,
                Outcome::Unknown => u64::MAX,
            })
            .collect();
        let must = ret.iter().filter(|r| **r != u64::MAX).count();
        Search {
            model,
            history,
            by_call,
            ret,
            must,
        }
    }

    /// The operations that may be linearized next after `linearized`, in the
    /// order worth trying: earliest return first (it is the one most likely to
    /// be blocking others), unknown outcomes last.
    fn children(&self, linearized: &Bits, state: &M::State) -> Vec<(usize, M::State)> {
        // An operation may go next only if no pending operation returned before
        // it was called; its own return is always after its call.
        let min_ret = (0..self.history.len())
            .filter(|&i| !linearized.has(i))
            .map(|i| self.ret[i])
            .min()
            .unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for &i in &self.by_call {
            if linearized.has(i) {
                continue;
            }
            let op = &self.history[i];
            if op.call >= min_ret {
                break;
            }
            let (next, output) = self.model.step(state, &op.input);
            match &op.outcome {
                Outcome::Returned { output: seen, .. } => {
                    if output != *seen {
                        continue;
                    }
                    if self.model.observes_only(&op.input, seen) {
                        debug_assert!(next == *state, "observes_only op changed the state");
                        return vec![(i, next)];
                    }
                    out.push((i, next));
                }
                Outcome::TookEffect { .. } | Outcome::Unknown => out.push((i, next)),
            }
        }
        out.sort_by_key(|(i, _)| self.ret[*i]);
        out
    }

    fn run(self, budget: u64) -> Result<Checked, CheckError<M::State>> {
        let root_bits = Bits::new(self.history.len());
        let root_state = self.model.init();
        let mut seen: HashSet<(Bits, M::State)> = HashSet::new();
        let mut explored = 1u64;
        let mut path: Vec<usize> = Vec::new();
        let mut longest: (Vec<usize>, M::State) = (Vec::new(), root_state.clone());
        let mut stack = vec![Frame {
            children: self.children(&root_bits, &root_state),
            linearized: root_bits,
            returned_done: 0,
            next: 0,
        }];
        while let Some(top) = stack.last_mut() {
            if top.returned_done == self.must {
                return Ok(Checked { explored });
            }
            let Some((op, state)) = top.children.get(top.next).cloned() else {
                stack.pop();
                path.pop();
                continue;
            };
            top.next += 1;
            let mut linearized = top.linearized.clone();
            linearized.set(op);
            let returned_done = top.returned_done + usize::from(self.ret[op] != u64::MAX);
            if !seen.insert((linearized.clone(), state.clone())) {
                continue;
            }
            explored += 1;
            if explored > budget {
                return Err(CheckError::GaveUp { explored });
            }
            path.push(op);
            if path.len() > longest.0.len() {
                longest = (path.clone(), state.clone());
            }
            stack.push(Frame {
                children: self.children(&linearized, &state),
                linearized,
                returned_done,
                next: 0,
            });
        }
        Err(CheckError::NotLinearizable {
            longest: longest.0,
            state: longest.1,
            explored,
        })
    }
}

/// Render a check failure for a test failure message: the longest order that
/// could be linearized, then every pending operation that could not follow it
/// with what the model would have returned instead.
pub(crate) fn explain<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    err: &CheckError<M::State>,
) -> String {
    let mut out = String::new();
    match err {
        CheckError::Malformed { op } => {
            let _ = write!(
                out,
                "operation {op} returned before its call: {:?}",
                history[*op]
            );
        }
        CheckError::GaveUp { explored } => {
            let _ = write!(
                out,
                "checker gave up after {explored} states over {} operations",
                history.len()
            );
        }
        CheckError::NotLinearizable {
            longest,
            state,
            explored,
        } => {
            let _ = writeln!(
                out,
                "not linearizable ({} operations, {explored} states explored)",
                history.len()
            );
            let _ = writeln!(out, "longest linearizable order:");
            for &i in longest {
                let _ = writeln!(out, "  #{i}: {}", render(&history[i]));
            }
            let _ = writeln!(out, "model state after it: {state:?}; not linearized:");
            let mut rest: Vec<usize> = (0..history.len())
                .filter(|i| !longest.contains(i))
                .collect();
            rest.sort_by_key(|&i| history[i].call);
            // The first few are where it went wrong; the rest is noise.
            const SHOWN: usize = 12;
            if rest.len() > SHOWN {
                let _ = writeln!(out, "  ({} more after these)", rest.len() - SHOWN);
            }
            for i in rest.into_iter().take(SHOWN) {
                let (_, would) = model.step(state, &history[i].input);
                let _ = writeln!(
                    out,
                    "  #{i}: {} (model would return {would:?} here)",
                    render(&history[i])
                );
            }
        }
    }
    out
}

fn render<I: Debug, O: Debug>(op: &Operation<I, O>) -> String {
    match &op.outcome {
        Outcome::Returned { at, output } => {
            format!("[{}, {at}] {:?} -> {output:?}", op.call, op.input)
        }
        Outcome::TookEffect { by } => format!("[{}, {by}] {:?} -> unseen", op.call, op.input),
        Outcome::Unknown => format!("[{}, ?] {:?} -> unknown", op.call, op.input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register holding a number (0 initially) with compare-and-swap.
    struct Register;

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Write(u8),
        Read,
        Cas(u8, u8),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ret {
        Ok,
        Value(u8),
        Swapped(bool),
    }

    impl Model for Register {
        type State = u8;
        type Input = Op;
        type Output = Ret;

        fn init(&self) -> u8 {
            0
        }

        fn step(&self, state: &u8, input: &Op) -> (u8, Ret) {
            match *input {
                Op::Write(v) => (v, Ret::Ok),
                Op::Read => (*state, Ret::Value(*state)),
                Op::Cas(from, to) if *state == from => (to, Ret::Swapped(true)),
                Op::Cas(..) => (*state, Ret::Swapped(false)),
            }
        }

        fn observes_only(&self, input: &Op, output: &Ret) -> bool {
            matches!(
                (input, output),
                (Op::Read, _) | (Op::Cas(..), Ret::Swapped(false))
            )
        }
    }

    fn done(call: u64, at: u64, input: Op, output: Ret) -> Operation<Op, Ret> {
        Operation {
            call,
            input,
            outcome: Outcome::Returned { at, output },
        }
    }

    fn unknown(call: u64, input: Op) -> Operation<Op, Ret> {
        Operation {
            call,
            input,
            outcome: Outcome::Unknown,
        }
    }

    fn verdict(history: &[Operation<Op, Ret>]) -> Result<Checked, CheckError<u8>> {
        check(&Register, history, 1_000_000)
    }

    #[test]
    fn concurrent_history_with_a_valid_order_passes() {
        // Two overlapping writes; readers that overlap both may see either, but
        // once a read has seen 2 a later read may not go back to 1.
        let history = [
            done(1, 10, Op::Write(1), Ret::Ok),
            done(2, 11, Op::Write(2), Ret::Ok),
            done(3, 5, Op::Read, Ret::Value(0)),
            done(4, 12, Op::Read, Ret::Value(1)),
            done(13, 14, Op::Read, Ret::Value(2)),
            done(15, 18, Op::Cas(2, 3), Ret::Swapped(true)),
            done(16, 17, Op::Cas(2, 4), Ret::Swapped(false)),
            done(19, 20, Op::Read, Ret::Value(3)),
        ];
        verdict(&history).unwrap();
        // The empty history is trivially fine.
        verdict(&[]).unwrap();
    }

    #[test]
    fn stale_read_after_completed_write_fails() {
        let history = [
            done(1, 2, Op::Write(1), Ret::Ok),
            done(3, 4, Op::Read, Ret::Value(0)),
        ];
        let err = verdict(&history).unwrap_err();
        assert!(matches!(err, CheckError::NotLinearizable { .. }), "{err:?}");
        let text = explain(&Register, &history, &err);
        assert!(text.contains("model would return Value(1)"), "{text}");
    }

    #[test]
    fn lost_acknowledged_write_fails() {
        // Write 1 was acknowledged, then a later write and reads act as if it
        // never happened: reads after both see only the old value.
        let history = [
            done(1, 2, Op::Write(1), Ret::Ok),
            done(3, 6, Op::Read, Ret::Value(1)),
            done(7, 8, Op::Read, Ret::Value(0)),
        ];
        assert!(matches!(
            verdict(&history),
            Err(CheckError::NotLinearizable { .. })
        ));
    }

    #[test]
    fn cas_success_that_contradicts_real_time_order_fails() {
        // 2 overwrote 1 before the CAS began, so CAS(1 -> 3) cannot succeed.
        let history = [
            done(1, 2, Op::Write(1), Ret::Ok),
            done(3, 4, Op::Write(2), Ret::Ok),
            done(5, 6, Op::Cas(1, 3), Ret::Swapped(true)),
        ];
        assert!(matches!(
            verdict(&history),
            Err(CheckError::NotLinearizable { .. })
        ));
        // Overlapping the second write, the same CAS is fine: it went first.
        let history = [
            done(1, 2, Op::Write(1), Ret::Ok),
            done(3, 6, Op::Write(2), Ret::Ok),
            done(4, 5, Op::Cas(1, 3), Ret::Swapped(true)),
            done(7, 8, Op::Read, Ret::Value(2)),
        ];
        verdict(&history).unwrap();
    }

    #[test]
    fn unknown_outcomes_may_take_effect_late_or_never() {
        // Never observed: fine to leave out.
        let history = [
            unknown(1, Op::Write(5)),
            done(2, 3, Op::Read, Ret::Value(0)),
        ];
        verdict(&history).unwrap();
        // Observed long after the client gave up: fine, it took effect late.
        let history = [
            unknown(1, Op::Write(5)),
            done(2, 3, Op::Read, Ret::Value(0)),
            done(4, 5, Op::Write(1), Ret::Ok),
            done(6, 7, Op::Read, Ret::Value(5)),
        ];
        verdict(&history).unwrap();
        // But it takes effect once: seen, then gone, then back is impossible.
        let history = [
            unknown(1, Op::Write(5)),
            done(2, 3, Op::Read, Ret::Value(5)),
            done(4, 5, Op::Write(1), Ret::Ok),
            done(6, 7, Op::Read, Ret::Value(5)),
        ];
        assert!(matches!(
            verdict(&history),
            Err(CheckError::NotLinearizable { .. })
        ));
        // And it cannot take effect before it was called.
        let history = [
            done(1, 2, Op::Read, Ret::Value(5)),
            unknown(3, Op::Write(5)),
        ];
        assert!(matches!(
            verdict(&history),
            Err(CheckError::NotLinearizable { .. })
        ));
    }

    #[test]
    fn took_effect_must_be_linearized_before_its_bound() {
        let effective = |call, by, input| Operation {
            call,
            input,
            outcome: Outcome::TookEffect { by },
        };
        // Took effect by 3, so the read from 4 on must see it...
        let history = [
            effective(1, 3, Op::Write(5)),
            done(4, 5, Op::Read, Ret::Value(0)),
        ];
        assert!(matches!(
            verdict(&history),
            Err(CheckError::NotLinearizable { .. })
        ));
        // ...and must happen even if nothing ever observed it.
        let history = [
            effective(1, 3, Op::Cas(0, 5)),
            done(2, 6, Op::Cas(0, 7), Ret::Swapped(true)),
            done(7, 8, Op::Read, Ret::Value(7)),
        ];
        verdict(&history).unwrap();
        let history = [
            effective(1, 3, Op::Cas(0, 5)),
            done(4, 6, Op::Cas(0, 7), Ret::Swapped(true)),
        ];
        assert!(matches!(
            verdict(&history),
            Err(CheckError::NotLinearizable { .. })
        ));
    }

    #[test]
    fn many_concurrent_unknowns_stay_tractable() {
        // 40 writes that never answered, each overlapping everything after it,
        // followed by reads of values some of them wrote: the memo keeps the
        // search far below 2^40 states.
        let mut history: Vec<_> = (0..40)
            .map(|i| unknown(i, Op::Write(i as u8 % 7)))
            .collect();
        for (k, v) in [3u8, 5, 6, 1].into_iter().enumerate() {
            let call = 100 + 2 * k as u64;
            history.push(done(call, call + 1, Op::Read, Ret::Value(v)));
        }
        let checked = verdict(&history).unwrap();
        assert!(checked.explored < 100_000, "{checked:?}");
    }

    #[test]
    fn malformed_and_budget() {
        let history = [done(5, 5, Op::Read, Ret::Value(0))];
        assert_eq!(verdict(&history), Err(CheckError::Malformed { op: 0 }));
        let history: Vec<_> = (0..20)
            .map(|i| done(i, 100 + i, Op::Write(i as u8), Ret::Ok))
            .chain([done(200, 201, Op::Read, Ret::Value(99))])
            .collect();
        assert!(matches!(
            check(&Register, &history, 50),
            Err(CheckError::GaveUp { .. })
        ));
    }
}
