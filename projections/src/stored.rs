//! Storage forms of read-model columns, decoded once, in the row types: money is stored as text
//! written from a `Decimal` and JSON as text, on both backends. A row field of type `Decimal`
//! (`#[sqlx(try_from = "DecimalText")]`) or `Vec<String>` / `serde_json::Value`
//! (`#[sqlx(try_from = "JsonText")]`) makes a corrupt value a decode error of the query (a 500
//! that is logged), never a silent `0.00` or an empty list.

use rust_decimal::Decimal;

/// What a stored value failed to decode as.
#[derive(Debug, thiserror::Error)]
#[error("corrupt read-model value {value:?}: not {expected}")]
pub struct StoredError {
    value: String,
    expected: &'static str,
}

/// A decimal amount as stored (text written from a `Decimal`).
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub struct DecimalText(String);

impl TryFrom<DecimalText> for Decimal {
    type Error = StoredError;

    fn try_from(t: DecimalText) -> Result<Self, StoredError> {
        t.0.parse().map_err(|_| StoredError {
            value: t.0,
            expected: "a decimal amount",
        })
    }
}

/// A nullable decimal amount as stored.
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub struct OptDecimalText(Option<String>);

impl TryFrom<OptDecimalText> for Option<Decimal> {
    type Error = StoredError;

    fn try_from(t: OptDecimalText) -> Result<Self, StoredError> {
        t.0.map(|s| Decimal::try_from(DecimalText(s))).transpose()
    }
}

/// A JSON document as stored (text).
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub struct JsonText(String);

impl TryFrom<JsonText> for serde_json::Value {
    type Error = StoredError;

    fn try_from(t: JsonText) -> Result<Self, StoredError> {
        serde_json::from_str(&t.0).map_err(|_| StoredError {
            value: t.0,
            expected: "JSON",
        })
    }
}

impl TryFrom<JsonText> for Vec<String> {
    type Error = StoredError;

    fn try_from(t: JsonText) -> Result<Self, StoredError> {
        serde_json::from_str(&t.0).map_err(|_| StoredError {
            value: t.0,
            expected: "a JSON array of strings",
        })
    }
}

impl TryFrom<JsonText> for Vec<serde_json::Value> {
    type Error = StoredError;

    fn try_from(t: JsonText) -> Result<Self, StoredError> {
        serde_json::from_str(&t.0).map_err(|_| StoredError {
            value: t.0,
            expected: "a JSON array",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_values_are_errors_never_defaults() {
        assert_eq!(
            Decimal::try_from(DecimalText("12.50".into())).unwrap(),
            Decimal::new(1250, 2)
        );
        assert!(Decimal::try_from(DecimalText("12,50".into())).is_err());
        assert!(Decimal::try_from(DecimalText(String::new())).is_err());
        assert_eq!(
            Option::<Decimal>::try_from(OptDecimalText(None)).unwrap(),
            None
        );
        assert!(Option::<Decimal>::try_from(OptDecimalText(Some("x".into()))).is_err());
        assert_eq!(
            Vec::<String>::try_from(JsonText(r#"["a","b"]"#.into())).unwrap(),
            vec!["a", "b"]
        );
        assert!(Vec::<String>::try_from(JsonText("[1]".into())).is_err());
        assert!(serde_json::Value::try_from(JsonText("{".into())).is_err());
    }
}
