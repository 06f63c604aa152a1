//! Documents of a read store, and the differences between two sets of them.

use std::collections::{BTreeMap, BTreeSet};

use parallax_core::{ClusteringRange, ReadStore, ReadStoreError};
use serde_json::Value;

/// Documents by (view, partition, clustering).
pub type Documents = BTreeMap<(String, String, String), Value>;

/// Documents per page of a scan.
const PAGE: usize = 500;

/// Every document of `partitions` (view, partition) in `store`.
///
/// # Errors
/// When the store fails.
pub async fn documents(
    store: &dyn ReadStore,
    partitions: &BTreeSet<(String, String)>,
) -> Result<Documents, ReadStoreError> {
    let mut documents = Documents::new();
    for (view, partition) in partitions {
        let mut range = ClusteringRange::default();
        loop {
            let page = store.scan(view, partition, &range, PAGE).await?;
            for document in page.documents {
                documents.insert((view.clone(), partition.clone(), document.key.clustering), document.body);
            }
            match page.next_cursor {
                Some(cursor) => range.after = Some(cursor),
                None => break,
            }
        }
    }
    Ok(documents)
}

/// Every difference of `actual` (the read DB) from `expected` (a fold of the
/// event store, see [`crate::check::fold`]), one line each: documents
/// missing, differing (naming up to five fields), extra.
pub fn differences(expected: &Documents, actual: &Documents) -> Vec<String> {
    let place = |(view, partition, clustering): &(String, String, String)| {
        if clustering.is_empty() {
            format!("{view}/{partition}")
        } else {
            format!("{view}/{partition}/{clustering}")
        }
    };
    let mut lines = Vec::new();
    for (key, body) in expected {
        match actual.get(key) {
            None => lines.push(format!("missing {}: the fold has {}", place(key), brief(body))),
            Some(other) if other != body => {
                let mut fields = Vec::new();
                changed_fields("", body, other, &mut fields);
                let shown = fields.len().min(5);
                let more = if fields.len() > shown {
                    format!("; {} more", fields.len() - shown)
                } else {
                    String::new()
                };
                lines.push(format!(
                    "differs {}: {}{more} (fold → read DB)",
                    place(key),
                    fields[..shown].join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    for (key, body) in actual {
        if !expected.contains_key(key) {
            lines.push(format!("extra {}: {}", place(key), brief(body)));
        }
    }
    lines
}

/// Where `actual` differs from `expected`, one `path: expected → actual` each.
fn changed_fields(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for name in names {
                let inner = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                match (a.get(name), b.get(name)) {
                    (Some(x), Some(y)) => changed_fields(&inner, x, y, out),
                    (x, y) => out.push(format!(
                        "{inner}: {} → {}",
                        x.map_or_else(|| "absent".to_owned(), brief),
                        y.map_or_else(|| "absent".to_owned(), brief)
                    )),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                changed_fields(&format!("{path}[{index}]"), x, y, out);
            }
        }
        (x, y) if x != y => {
            let path = if path.is_empty() { "body" } else { path };
            out.push(format!("{path}: {} → {}", brief(x), brief(y)));
        }
        _ => {}
    }
}

/// A body, cut to 200 characters.
fn brief(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn differences_name_documents_and_fields() {
        let key = |partition: &str| ("cart".to_owned(), partition.to_owned(), String::new());
        let fold = Documents::from([
            (key("a"), json!({"items": [{"sku": "A", "quantity": 2}], "status": "open"})),
            (key("b"), json!({"status": "open"})),
        ]);
        let read = Documents::from([
            (key("a"), json!({"items": [{"sku": "A", "quantity": 4}], "status": "open"})),
            (key("c"), json!({"status": "open"})),
        ]);
        assert_eq!(
            differences(&fold, &read),
            [
                "differs cart/a: items[0].quantity: 2 → 4 (fold → read DB)",
                r#"missing cart/b: the fold has {"status":"open"}"#,
                r#"extra cart/c: {"status":"open"}"#,
            ]
        );
    }
}
