//! JSON Schemas of the events, generated from the types above (one derive each). They
//! are published in `docs/schemas/<subject>.json`; a test keeps the files and the types
//! equal (`UPDATE_SCHEMAS=1 cargo test --lib schemas` rewrites them after a change).

use schemars::schema_for;
use serde_json::Value;

use super::budget::{BUDGET_ALERT, BudgetAlert};
use super::events::{
    IMAGE_COMPLETED, IMAGE_FAILED, IMAGE_GENERATED, IMAGE_REQUESTED, ImageCompleted, ImageFailed, ImageGenerated,
    ImageRequested,
};

/// `(subject, schema)` for every event.
pub fn all() -> Vec<(&'static str, Value)> {
    let value = |schema: schemars::Schema| serde_json::to_value(schema).expect("schemas serialize");
    let mut requested = value(schema_for!(ImageRequested));
    // Its default is "the time of reading", not the time the schema was made.
    if let Some(property) = requested.pointer_mut("/properties/requested_at").and_then(Value::as_object_mut) {
        property.remove("default");
    }
    vec![
        (IMAGE_REQUESTED, requested),
        (IMAGE_GENERATED, value(schema_for!(ImageGenerated))),
        (IMAGE_COMPLETED, value(schema_for!(ImageCompleted))),
        (IMAGE_FAILED, value(schema_for!(ImageFailed))),
        (BUDGET_ALERT, value(schema_for!(BudgetAlert))),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_published_schemas_are_the_types_schemas() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas");
        for (subject, schema) in super::all() {
            let file = dir.join(format!("{subject}.json"));
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if std::env::var_os("UPDATE_SCHEMAS").is_some() {
                std::fs::write(&file, &text).unwrap();
            }
            let published = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                published == text,
                "{} is out of date: run UPDATE_SCHEMAS=1 cargo test --lib schemas",
                file.display()
            );
        }
    }
}
