//! The stop ladder: how ccb ends a session it decided to end (the ceiling, the premium guard, a
//! TERM or HUP of its own). First the interrupt that ends claude's agent loop at once (Ctrl-C
//! through the terminal, SIGINT in print mode); after [`INTERRUPT_GRACE`], TERM to claude and
//! everything it started; after [`TERM_GRACE`], KILL to whatever is left, again every 50 ms; and
//! once claude has exited, KILL to every process of the session until none is left.
//!
//! The processes are reached through [`Tree`], so the ladder is tested with a fake tree and a
//! fake clock (the end-to-end tests stop real trees).

use crate::core::exit::StopCause;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// From the interrupt to TERM.
pub const INTERRUPT_GRACE: Duration = Duration::from_millis(300);
/// From TERM to KILL.
pub const TERM_GRACE: Duration = Duration::from_millis(700);
/// KILL again, as long as claude lives.
const KILL_EVERY: Duration = Duration::from_millis(50);
/// Once claude has exited: how long to go on killing what it left, and how often.
const SWEEP_FOR: Duration = Duration::from_secs(2);
const SWEEP_EVERY: Duration = Duration::from_millis(5);

/// The process operations the ladder needs.
pub trait Tree {
    /// Claude's pid.
    fn claude(&self) -> i32;
    /// Claude has exited (and was reaped).
    fn claude_ended(&self) -> bool;
    /// Interrupt claude the way that ends its agent loop at once.
    fn interrupt(&mut self);
    /// Signal each of these processes once.
    fn signal(&mut self, pids: &[i32], sig: Signal);
    /// Every live process of the session (claude among them, while it lives).
    fn live(&self) -> Vec<i32>;
    /// Reap whatever ended.
    fn reap(&mut self);
    fn now(&self) -> Instant;
    fn sleep(&mut self, d: Duration);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Interrupted,
    Terminated,
    Killing,
}

/// A stop under way.
#[derive(Debug)]
pub struct Stopping {
    pub cause: StopCause,
    began: Instant,
    stage: Stage,
    /// When the next rung is due.
    pub next_at: Instant,
    /// Processes of the session alive when the stop began.
    processes: usize,
}

/// A stop done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub cause: StopCause,
    /// From deciding to stop to the last process of the session gone.
    pub took: Duration,
    pub processes: usize,
}

impl Stopping {
    /// Begin: interrupt claude, unless it has exited already.
    pub fn begin(cause: StopCause, tree: &mut impl Tree) -> Stopping {
        let now = tree.now();
        let processes = tree.live().len();
        log::debug!("stop ({cause:?}): interrupting claude; {processes} processes in the session");
        if !tree.claude_ended() {
            tree.interrupt();
        }
        Stopping { cause, began: now, stage: Stage::Interrupted, next_at: now + INTERRUPT_GRACE, processes }
    }

    /// The next rung, when it is due.
    pub fn advance(&mut self, tree: &mut impl Tree) {
        let now = tree.now();
        if now < self.next_at {
            return;
        }
        match self.stage {
            Stage::Interrupted => {
                // Still there: end claude and everything it started, each signalled once
                // (claude is among the descendants too).
                let claude = tree.claude();
                tree.signal(&[claude], Signal::SIGTERM);
                let others: Vec<i32> = tree.live().into_iter().filter(|&p| p != claude).collect();
                log::debug!("stop: still running after the interrupt: SIGTERM to claude and {} more", others.len());
                tree.signal(&others, Signal::SIGTERM);
                self.stage = Stage::Terminated;
                self.next_at = now + TERM_GRACE;
            }
            Stage::Terminated | Stage::Killing => {
                let all = tree.live();
                log::debug!("stop: SIGKILL to {} processes left", all.len());
                tree.signal(&all, Signal::SIGKILL);
                self.stage = Stage::Killing;
                self.next_at = now + KILL_EVERY;
            }
        }
    }

    /// Claude has exited during the stop: nothing of the session may outlive it.
    pub fn finish(self, tree: &mut impl Tree) -> Stopped {
        let t0 = tree.now();
        loop {
            let left = tree.live();
            if left.is_empty() || tree.now().duration_since(t0) > SWEEP_FOR {
                break;
            }
            tree.signal(&left, Signal::SIGKILL);
            tree.sleep(SWEEP_EVERY);
            tree.reap();
        }
        tree.reap();
        log::debug!(
            "stop ({:?}): claude ended, nothing left, {} ms after the stop began",
            self.cause,
            tree.now().duration_since(self.began).as_millis()
        );
        Stopped { cause: self.cause, took: tree.now().duration_since(self.began), processes: self.processes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session's processes on paper, in the spirit of watchexec's `TestChild`: each process
    /// dies of the signals it heeds, and the clock moves only when the test (or the ladder's
    /// sleep) moves it.
    struct FakeTree {
        now: Instant,
        claude: i32,
        /// pid → the signals that end it (a process that heeds none outlives everything but KILL).
        live: Vec<(i32, Vec<Signal>)>,
        /// Claude heeds the interrupt.
        ends_on_interrupt: bool,
        reaped: bool,
        log: Vec<String>,
    }

    impl FakeTree {
        fn new(claude_heeds: &[Signal], others: &[(i32, &[Signal])], ends_on_interrupt: bool) -> FakeTree {
            let mut live = vec![(1, claude_heeds.to_vec())];
            live.extend(others.iter().map(|(p, s)| (*p, s.to_vec())));
            FakeTree { now: Instant::now(), claude: 1, live, ends_on_interrupt, reaped: false, log: Vec::new() }
        }
        fn wait(&mut self, d: Duration) {
            self.now += d;
        }
    }

    impl Tree for FakeTree {
        fn claude(&self) -> i32 {
            self.claude
        }
        fn claude_ended(&self) -> bool {
            self.reaped
        }
        fn interrupt(&mut self) {
            self.log.push("interrupt".into());
            if self.ends_on_interrupt {
                self.live.retain(|(p, _)| *p != 1);
            }
        }
        fn signal(&mut self, pids: &[i32], sig: Signal) {
            if pids.is_empty() {
                return;
            }
            self.log.push(format!("{} {pids:?}", sig.as_str()));
            self.live.retain(|(p, heeds)| !pids.contains(p) || !(sig == Signal::SIGKILL || heeds.contains(&sig)));
        }
        fn live(&self) -> Vec<i32> {
            self.live.iter().map(|(p, _)| *p).collect()
        }
        fn reap(&mut self) {
            if !self.live.iter().any(|(p, _)| *p == self.claude) {
                self.reaped = true;
            }
        }
        fn now(&self) -> Instant {
            self.now
        }
        fn sleep(&mut self, d: Duration) {
            self.now += d;
        }
    }

    /// Run the ladder as the supervisor's loop does: advance at each deadline, reap, and finish
    /// once claude has exited.
    fn run(tree: &mut FakeTree) -> Stopped {
        let mut st = Stopping::begin(StopCause::Ceiling, tree);
        for _ in 0..100 {
            tree.reap();
            if tree.claude_ended() {
                return st.finish(tree);
            }
            let wait = st.next_at.saturating_duration_since(tree.now());
            tree.wait(wait);
            st.advance(tree);
        }
        panic!("the ladder never ended: {:?}", tree.log);
    }

    #[test]
    fn claude_heeding_the_interrupt_ends_at_once() {
        let mut t = FakeTree::new(&[], &[], true);
        let s = run(&mut t);
        assert_eq!(t.log, ["interrupt"]);
        assert_eq!(s, Stopped { cause: StopCause::Ceiling, took: Duration::ZERO, processes: 1 });
    }

    #[test]
    fn term_after_the_interrupt_grace_to_claude_first_then_the_rest() {
        let mut t = FakeTree::new(&[Signal::SIGTERM], &[(2, &[Signal::SIGTERM]), (3, &[Signal::SIGTERM])], false);
        let s = run(&mut t);
        assert_eq!(t.log, ["interrupt", "SIGTERM [1]", "SIGTERM [2, 3]"]);
        assert_eq!((s.took, s.processes), (INTERRUPT_GRACE, 3));
    }

    #[test]
    fn kill_after_the_term_grace_and_again_until_claude_is_gone() {
        let mut t = FakeTree::new(&[], &[(2, &[])], false);
        let s = run(&mut t);
        assert_eq!(t.log, ["interrupt", "SIGTERM [1]", "SIGTERM [2]", "SIGKILL [1, 2]"]);
        assert_eq!(s.took, INTERRUPT_GRACE + TERM_GRACE);
    }

    #[test]
    fn what_claude_leaves_behind_is_killed_once_it_exits() {
        // Claude heeds the interrupt; a tool it started ignores everything but KILL.
        let mut t = FakeTree::new(&[], &[(7, &[])], true);
        let s = run(&mut t);
        assert_eq!(t.log, ["interrupt", "SIGKILL [7]"]);
        assert!(t.live.is_empty());
        assert_eq!((s.took, s.processes), (SWEEP_EVERY, 2));
    }

    #[test]
    fn a_claude_gone_already_is_not_interrupted() {
        let mut t = FakeTree::new(&[], &[], false);
        t.live.clear();
        t.reap();
        let s = run(&mut t);
        assert!(t.log.is_empty(), "{:?}", t.log);
        assert_eq!(s.processes, 0);
    }

    #[test]
    fn nothing_happens_before_a_rung_is_due() {
        let mut t = FakeTree::new(&[], &[], false);
        let mut st = Stopping::begin(StopCause::Signal(15), &mut t);
        t.wait(INTERRUPT_GRACE - Duration::from_millis(1));
        st.advance(&mut t);
        assert_eq!(t.log, ["interrupt"]);
        t.wait(Duration::from_millis(1));
        st.advance(&mut t);
        assert_eq!(t.log, ["interrupt", "SIGTERM [1]"]);
    }
}
