//! Crypto-shredding's fixtures: personal data distinctive enough that
//! finding its bytes anywhere means it leaked, and the byte search.

use serde_json::{json, Value};

/// The customer whose data is searched for.
pub const CUSTOMER: &str = "zelda";
pub const NAME: &str = "Zelda Quarrington-Vex";
pub const EMAIL: &str = "zelda.quarrington@example.org";
pub const ADDRESS: &str = "17 Obscure Lane\nNowhere-on-Sea";

/// The checkout's `contact`.
pub fn contact() -> Value {
    json!({ "name": NAME, "email": EMAIL, "address": ADDRESS })
}

/// Every way the plaintext could appear: raw, in parts (either side of the
/// address's line feed, however a dump escapes it), and as JSON text.
pub fn plaintexts() -> Vec<Vec<u8>> {
    let mut needles: Vec<Vec<u8>> = [NAME, EMAIL, ADDRESS, "Obscure Lane", "Nowhere-on-Sea", "Quarrington"]
        .map(|s| s.as_bytes().to_vec())
        .into();
    needles.push(serde_json::to_string(ADDRESS).expect("json").into_bytes());
    needles
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

/// Checks that none of `needles` occurs in any of `sources` (a name and its
/// bytes), and that each source holds `CUSTOMER` and a sealed value, so the
/// search reads the bytes it means to.
#[track_caller]
pub fn assert_nowhere(sources: &[(String, Vec<u8>)], needles: &[Vec<u8>], when: &str) {
    assert!(!sources.is_empty(), "{when}: nothing to search");
    for (name, bytes) in sources {
        assert!(contains(bytes, CUSTOMER.as_bytes()), "{when}: the customer id is not in {name}");
        assert!(contains(bytes, b"pax1."), "{when}: no sealed value in {name}");
        for needle in needles {
            assert!(
                !contains(bytes, needle),
                "{when}: {:?} found in {name}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}
