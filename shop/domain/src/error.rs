//! How a command is refused, and the input checks the aggregates share.

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

/// An aggregate's error: a precise message (`Display`) and its [`Refusal`].
///
/// Lets the edge handle every aggregate's errors alike
/// (`CommandError<E: DomainError>`). Each error also has an inherent
/// `kind()`, so callers need not import this trait.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// The kind of refusal.
    fn kind(&self) -> Refusal;
}

/// Longest id (SKU, cart id, customer id), in characters.
pub const MAX_ID_LEN: usize = 64;
/// Longest product name, in characters.
pub const MAX_NAME_LEN: usize = 200;

/// What is wrong with an id (SKU, cart id, customer id), if anything: ids are
/// 1 to 64 characters from `[A-Za-z0-9._-]`.
pub(crate) fn id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        Some("must not be empty")
    } else if id.len() > MAX_ID_LEN {
        Some("must be at most 64 characters")
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        Some("may contain only letters A-Z and a-z, digits, '.', '_' and '-'")
    } else {
        None
    }
}

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
    fn ids() {
        assert_eq!(id_problem("MUG-1.a_b"), None);
        assert_eq!(id_problem(&"a".repeat(64)), None);
        assert_eq!(id_problem(""), Some("must not be empty"));
        assert_eq!(id_problem("  "), Some("must not be empty"));
        assert_eq!(id_problem(&"a".repeat(65)), Some("must be at most 64 characters"));
        assert!(id_problem("a b").is_some());
        assert!(id_problem("a/b").is_some());
        assert!(id_problem("é").is_some());
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("Blue mug, 300 ml — é"), None);
        assert_eq!(name_problem(&"é".repeat(200)), None);
        assert_eq!(name_problem(" \t"), Some("must not be blank"));
        assert_eq!(name_problem(&"é".repeat(201)), Some("must be at most 200 characters"));
        assert_eq!(name_problem("a\nb"), Some("must not contain control characters"));
    }
}
