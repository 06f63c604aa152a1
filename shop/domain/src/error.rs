//! How a command is refused, and the name check the aggregates share (the
//! id rule is in [`crate::values`]).

/// The kind of a refusal, for the edge to map onto its own vocabulary
/// (over HTTP: 400, 404, 409 and 422).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The command itself is malformed: an empty name, a bad id, a zero
    /// quantity (HTTP 400).
    Invalid,
    /// The command is about something that does not exist (HTTP 404).
    NotFound,
    /// The command would create something that already exists (HTTP 409).
    AlreadyExists,
    /// The command is well formed but a business rule forbids it now
    /// (HTTP 422).
    RuleViolated,
}

/// An aggregate's error: a precise message (`Display`), its [`Refusal`]
/// and a stable code.
///
/// Lets the edge handle every aggregate's errors alike
/// (`CommandError<E: DomainError>`). Each error also has an inherent
/// `kind()` and `code()`, so callers need not import this trait.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// The kind of refusal.
    fn kind(&self) -> Refusal;

    /// What went wrong, for programs: kebab-case, one per variant
    /// (`order-already-shipped`), never reworded once published, unlike the
    /// message. Answered over HTTP as the problem's `code`.
    fn code(&self) -> &'static str;
}

/// Longest product name, in characters.
pub const MAX_NAME_LEN: usize = 200;

/// What is wrong with a product name, if anything: names are not blank, have
/// at most 200 characters and no control characters.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("must not be blank")
    } else if name.chars().count() > MAX_NAME_LEN {
        Some("must be at most 200 characters")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_problem("Blue mug, 300 ml — é"), None);
        assert_eq!(name_problem(&"é".repeat(200)), None);
        assert_eq!(name_problem(" \t"), Some("must not be blank"));
        assert_eq!(name_problem(&"é".repeat(201)), Some("must be at most 200 characters"));
        assert_eq!(name_problem("a\nb"), Some("must not contain control characters"));
    }
}
