//! Personal data in events: a customer's name, e-mail and shipping address,
//! each field sealed under the customer's own key
//! ([`parallax_core::keys`]), so the events, the topic and the views carry
//! only ciphertext, and destroying the key (`POST
//! /api/customers/{id}/forget`) erases the data everywhere at once while
//! the rest of the history (orders, totals, sales) stays as it was.
//!
//! The command side seals ([`PersonalData::seal`]) before the decision,
//! the query side opens ([`PersonalData::open`]) what it shows; a consumer
//! without the key store (the fulfilment service, anyone on the topic)
//! sees ciphertext. The subject of the key, and part of each field's
//! associated data, is the customer id; the field's name is the other part,
//! so a sealed value moved to another customer or field does not open.

use parallax_core::keys::{open_or_erased, seal};
use parallax_core::DataKey;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer's personal data as events carry it: each field a sealed
/// value (`pax1.` then base64url: nonce, AES-256-GCM ciphertext and tag),
/// readable only with the customer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PersonalData {
    /// The buyer's name, sealed.
    pub name: String,
    /// The buyer's e-mail address, sealed.
    pub email: String,
    /// The shipping address, sealed.
    pub address: String,
}

/// The schema of an event's `personal`: [`PersonalData`] or null, and
/// required (schemars drops the null of a required `Option`).
pub fn nullable(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let data = generator.subschema_for::<PersonalData>();
    schemars::json_schema!({ "anyOf": [data, { "type": "null" }] })
}

/// A customer's personal data in the clear: what a checkout is given and a
/// query shows (each field [`parallax_core::ERASED`] once the key is gone).
/// Never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The buyer's name.
    pub name: String,
    /// The buyer's e-mail address.
    pub email: String,
    /// The shipping address, lines separated by newlines.
    pub address: String,
}

/// The fields' names, part of each sealed value's associated data.
const NAME: &str = "name";
const EMAIL: &str = "email";
const ADDRESS: &str = "address";

impl PersonalData {
    /// `contact` sealed under `key`, the key of `customer_id`.
    pub fn seal(key: &DataKey, customer_id: &str, contact: &Contact) -> Self {
        Self {
            name: seal(key, customer_id, NAME, &contact.name),
            email: seal(key, customer_id, EMAIL, &contact.email),
            address: seal(key, customer_id, ADDRESS, &contact.address),
        }
    }

    /// The data in the clear with `customer_id`'s key; without it (the key
    /// was destroyed) or where a field does not open, that field reads as
    /// [`parallax_core::ERASED`].
    pub fn open(&self, key: Option<&DataKey>, customer_id: &str) -> Contact {
        Contact {
            name: open_or_erased(key, customer_id, NAME, &self.name),
            email: open_or_erased(key, customer_id, EMAIL, &self.email),
            address: open_or_erased(key, customer_id, ADDRESS, &self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use parallax_core::ERASED;

    use super::*;

    fn alice() -> Contact {
        Contact {
            name: "Alice Liddell".into(),
            email: "alice@example.com".into(),
            address: "1 Rabbit Hole\nOxford".into(),
        }
    }

    #[test]
    fn sealed_data_opens_with_the_customers_key_only() {
        let key = DataKey::generate();
        let sealed = PersonalData::seal(&key, "alice", &alice());
        let json = serde_json::to_string(&sealed).expect("json");
        for clear in ["Alice", "alice@example.com", "Rabbit", "Oxford"] {
            assert!(!json.contains(clear), "{clear} in {json}");
        }
        assert_eq!(sealed.open(Some(&key), "alice"), alice());
        let erased = Contact { name: ERASED.into(), email: ERASED.into(), address: ERASED.into() };
        assert_eq!(sealed.open(None, "alice"), erased, "without the key");
        assert_eq!(sealed.open(Some(&DataKey::generate()), "alice"), erased, "another key");
        assert_eq!(sealed.open(Some(&key), "bob"), erased, "another customer");
    }

    #[test]
    fn a_field_moved_to_another_field_does_not_open() {
        let key = DataKey::generate();
        let sealed = PersonalData::seal(&key, "alice", &alice());
        let swapped = PersonalData { name: sealed.email.clone(), ..sealed };
        let opened = swapped.open(Some(&key), "alice");
        assert_eq!(opened.name, ERASED);
        assert_eq!(opened.email, "alice@example.com");
    }

    /// What any consumer of the log does (the fulfilment service, a Kafka
    /// client with this crate): decode today's version; the data stays
    /// sealed, and without the key it reads as erased.
    #[test]
    fn a_consumer_decodes_v2_and_sees_only_ciphertext() {
        let key = DataKey::generate();
        let personal = PersonalData::seal(&key, "alice", &alice());
        let event = crate::OrderEvent::Placed {
            order_id: uuid::Uuid::nil(),
            customer_id: "alice".into(),
            cart_id: "c1".into(),
            lines: Vec::new(),
            total_cents: 0,
            personal: Some(personal.clone()),
        };
        let codec = parallax_core::Codec::<crate::OrderEvent>::new();
        let (event_type, version, payload) = codec.encode(&event);
        assert_eq!((event_type, version), ("order.placed", 2));
        assert!(!payload.contains("alice@example.com") && payload.contains("pax1."), "{payload}");
        let decoded = codec.decode(event_type, version, &payload).expect("v2 decodes");
        let crate::OrderEvent::Placed { personal: Some(sealed), .. } = decoded else {
            panic!("order.placed with personal data: {decoded:?}");
        };
        assert_eq!(sealed, personal);
        assert_eq!(sealed.open(None, "alice").email, ERASED);
    }
}
