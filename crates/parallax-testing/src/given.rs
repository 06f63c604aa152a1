//! Given/when/then for [`Aggregate`]s: pure, synchronous, milliseconds.
//!
//! [`given`] folds past events onto `A::default()` with `A::apply`,
//! [`Given::when`] asks the resulting state to `handle` one command, and the
//! `then_*` assertions check what it decided. Events are compared through
//! their JSON form (`serde_json::to_value`), which every [`DomainEvent`]
//! has, so no `PartialEq` bound is needed. A failed assertion panics with the
//! given events, the command and what actually happened, at the caller's line.
//!
//! ```
//! use parallax_core::{Aggregate, DomainEvent};
//! use parallax_testing::given::given;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! #[serde(tag = "type", content = "data")]
//! enum CounterEvent {
//!     #[serde(rename = "counter.added")]
//!     Added { n: u32 },
//! }
//!
//! impl DomainEvent for CounterEvent {
//!     fn event_type(&self) -> &'static str {
//!         "counter.added"
//!     }
//! }
//!
//! #[derive(Debug)]
//! struct TooBig(u32);
//!
//! impl std::fmt::Display for TooBig {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         write!(f, "counter would reach {}, above 10", self.0)
//!     }
//! }
//!
//! impl std::error::Error for TooBig {}
//!
//! #[derive(Debug, Default, Clone, Serialize, Deserialize)]
//! struct Counter {
//!     total: u32,
//! }
//!
//! impl Aggregate for Counter {
//!     const STREAM_TYPE: &'static str = "counter";
//!     type Command = u32;
//!     type Event = CounterEvent;
//!     type Error = TooBig;
//!
//!     fn handle(&self, n: &u32) -> Result<Vec<CounterEvent>, TooBig> {
//!         match self.total + n {
//!             total if total > 10 => Err(TooBig(total)),
//!             _ => Ok(vec![CounterEvent::Added { n: *n }]),
//!         }
//!     }
//!
//!     fn apply(&mut self, CounterEvent::Added { n }: &CounterEvent) {
//!         self.total += n;
//!     }
//! }
//!
//! given::<Counter>([CounterEvent::Added { n: 4 }])
//!     .when(5)
//!     .then([CounterEvent::Added { n: 5 }])
//!     .then_state(|counter| assert_eq!(counter.total, 9));
//!
//! given::<Counter>([CounterEvent::Added { n: 4 }])
//!     .when(7)
//!     .then_error(|e| e.0 == 11)
//!     .then_error_message("counter would reach 11, above 10")
//!     .then_state(|counter| assert_eq!(counter.total, 4));
//! ```

use std::fmt::{Debug, Display};

use parallax_core::{Aggregate, DomainEvent};

/// Starts a scenario: the state of a stream that holds `events`.
///
/// `given::<A>([])` is a stream that does not exist yet.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    let mut state = A::default();
    for event in &events {
        state.apply(event);
    }
    Given { events, state }
}

/// The past of a scenario: events, and the state they fold into.
pub struct Given<A: Aggregate> {
    events: Vec<A::Event>,
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// The state the given events fold into.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Asks the state to decide `command`.
    pub fn when(self, command: A::Command) -> Then<A>
    where
        A::Command: Debug,
    {
        let result = self.state.handle(&command);
        Then { given: self.events, state: self.state, command: format!("{command:#?}"), result }
    }
}

/// The decision of a scenario, to assert on. Every assertion returns the
/// scenario, so they chain.
pub struct Then<A: Aggregate> {
    given: Vec<A::Event>,
    state: A,
    command: String,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A> {
    /// Asserts that the command was accepted and produced exactly `expected`,
    /// in order.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> Self {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match &self.result {
            Ok(actual) if to_json(actual) == to_json(&expected) => {}
            Ok(actual) => {
                self.fail(format_args!("expected events: {expected:#?}\nbut it produced: {actual:#?}"))
            }
            Err(error) => self.fail(format_args!(
                "expected events: {expected:#?}\nbut it was refused: {error}\n  ({error:?})"
            )),
        }
        self
    }

    /// Asserts that the command was accepted and changed nothing (no events).
    #[track_caller]
    pub fn then_nothing(self) -> Self {
        self.then([])
    }

    /// Asserts that the command was refused with an error for which
    /// `predicate` holds, e.g. `|e| matches!(e, MyError::NotFound { .. })`.
    #[track_caller]
    pub fn then_error(self, predicate: impl FnOnce(&A::Error) -> bool) -> Self {
        match &self.result {
            Err(error) if predicate(error) => {}
            Err(error) => {
                self.fail(format_args!("expected another error\nbut it was refused: {error}\n  ({error:?})"))
            }
            Ok(actual) => self.fail(format_args!("expected an error\nbut it produced: {actual:#?}")),
        }
        self
    }

    /// Asserts that the command was refused with an error that displays as
    /// `expected`.
    #[track_caller]
    pub fn then_error_message(self, expected: &str) -> Self {
        match &self.result {
            Err(error) if error.to_string() == expected => {}
            Err(error) => self.fail(format_args!(
                "expected the error: {expected}\nbut it was refused: {error}\n  ({error:?})"
            )),
            Ok(actual) => {
                self.fail(format_args!("expected the error: {expected}\nbut it produced: {actual:#?}"))
            }
        }
        self
    }

    /// Runs `check` on the state after the decision: the given state with the
    /// produced events applied, or the given state unchanged if the command
    /// was refused.
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        let mut state = self.state.clone();
        if let Ok(events) = &self.result {
            for event in events {
                state.apply(event);
            }
        }
        check(&state);
        self
    }

    /// The decision itself, for assertions the methods above do not cover.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }

    #[track_caller]
    fn fail(&self, what: impl Display) -> ! {
        panic!(
            "given/when/then on a `{}` stream failed\ngiven: {:#?}\nwhen: {}\n{what}",
            A::STREAM_TYPE,
            self.given,
            self.command
        )
    }
}

fn to_json<E: DomainEvent>(events: &[E]) -> serde_json::Value {
    serde_json::to_value(events).expect("domain events serialize to JSON")
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Added {
        #[serde(rename = "counter.added")]
        Added { n: u32 },
    }

    impl DomainEvent for Added {
        fn event_type(&self) -> &'static str {
            "counter.added"
        }
    }

    #[derive(Debug)]
    struct TooBig;

    impl Display for TooBig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("too big")
        }
    }

    impl std::error::Error for TooBig {}

    #[derive(Debug, Default, Clone, Serialize, Deserialize)]
    struct Counter(u32);

    impl Aggregate for Counter {
        const STREAM_TYPE: &'static str = "counter";
        type Command = u32;
        type Event = Added;
        type Error = TooBig;

        fn handle(&self, n: &u32) -> Result<Vec<Added>, TooBig> {
            match n {
                0 => Ok(vec![]),
                n if self.0 + n > 10 => Err(TooBig),
                n => Ok(vec![Added::Added { n: *n }]),
            }
        }

        fn apply(&mut self, Added::Added { n }: &Added) {
            self.0 += n;
        }
    }

    #[test]
    fn passes_when_the_decision_matches() {
        given::<Counter>([Added::Added { n: 1 }])
            .when(2)
            .then([Added::Added { n: 2 }])
            .then_state(|counter| assert_eq!(counter.0, 3));
        given::<Counter>([]).when(0).then_nothing();
        given::<Counter>([]).when(11).then_error(|_| true).then_error_message("too big");
        assert!(given::<Counter>([]).when(11).into_result().is_err());
    }

    #[test]
    #[should_panic(
        expected = "given: [\n    Added {\n        n: 1,\n    },\n]\nwhen: 2\nexpected events: [\n    Added {\n        n: 3,"
    )]
    fn other_events_fail_with_the_scenario() {
        given::<Counter>([Added::Added { n: 1 }]).when(2).then([Added::Added { n: 3 }]);
    }

    #[test]
    #[should_panic(expected = "but it was refused: too big")]
    fn a_refusal_fails_then() {
        given::<Counter>([]).when(11).then([Added::Added { n: 11 }]);
    }

    #[test]
    #[should_panic(expected = "expected an error\nbut it produced: [\n    Added {\n        n: 2,")]
    fn events_fail_then_error() {
        given::<Counter>([]).when(2).then_error(|_| true);
    }

    #[test]
    #[should_panic(expected = "expected the error: not that\nbut it was refused: too big")]
    fn another_message_fails_then_error_message() {
        given::<Counter>([]).when(11).then_error_message("not that");
    }
}
