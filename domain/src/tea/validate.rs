//! Field validation shared by the tea aggregates. Every limit is explicit.

pub const MAX_NAME: usize = 200;
pub const MAX_SHORT: usize = 100;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG: usize = 50;
pub const MAX_NOTES: usize = 2_000;
pub const MAX_BODY: usize = 10_000;
/// Largest quantity one batch or one consumption may carry.
pub const MAX_QTY: i64 = 1_000_000_000;

pub fn text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<(), String> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(format!("{field} must be at most {max} characters"))
        }
        Some(v) => no_nul(field, v),
        None => Ok(()),
    }
}

/// Refuses the NUL character (U+0000), which PostgreSQL can store neither in `text` nor in
/// `jsonb`: it would fail the append instead of being refused as bad input.
pub fn no_nul(field: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!(
            "{field} must not contain the NUL character (U+0000)"
        ));
    }
    Ok(())
}

/// Whether a JSON value holds the NUL character in any string or key.
pub fn json_has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(json_has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// [`no_nul`] for a JSON value: every string and key in it.
pub fn json_no_nul(field: &str, v: &serde_json::Value) -> Result<(), String> {
    if json_has_nul(v) {
        return Err(format!(
            "{field} must not contain the NUL character (U+0000)"
        ));
    }
    Ok(())
}

pub fn tags(tags: &[String]) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("at most {MAX_TAGS} tags"));
    }
    for t in tags {
        text("tag", t, MAX_TAG)?;
    }
    Ok(())
}

pub fn qty(field: &str, q: i64, allow_zero: bool) -> Result<(), String> {
    let min = if allow_zero { 0 } else { 1 };
    if q < min || q > MAX_QTY {
        return Err(format!("{field} must be between {min} and {MAX_QTY}"));
    }
    Ok(())
}

/// ISO 4217 style: three upper-case letters.
pub fn currency(c: &str) -> Result<(), String> {
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err("currency must be three upper-case letters (ISO 4217)".into())
    }
}
