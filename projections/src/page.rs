//! Keyset pagination: `limit` (default 50, max 200) and an opaque cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PageError {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    Limit,
    #[error("cursor is not valid")]
    Cursor,
}

/// A validated page request: rows with a key after `after`, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page {
    pub after: i64,
    pub limit: i64,
}

impl Page {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Page, PageError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(PageError::Limit);
        }
        let after = match cursor {
            None | Some("") => 0,
            Some(c) => decode(c).ok_or(PageError::Cursor)?,
        };
        Ok(Page { after, limit })
    }

    /// Ask the database for one row more than the page, to know whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Trims the extra row and returns the cursor of the next page, if any.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> i64) -> Option<String> {
        if rows.len() as i64 > self.limit {
            rows.truncate(self.limit as usize);
            rows.last().map(|r| encode(key(r)))
        } else {
            None
        }
    }
}

pub fn encode(key: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("k1:{key}"))
}

fn decode(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    s.strip_prefix("k1:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let p = Page::parse(Some(10), Some(&encode(42))).unwrap();
        assert_eq!(
            p,
            Page {
                after: 42,
                limit: 10
            }
        );
        assert_eq!(Page::parse(None, Some("nope!")), Err(PageError::Cursor));
        assert_eq!(Page::parse(Some(0), None), Err(PageError::Limit));
        assert_eq!(Page::parse(Some(201), None), Err(PageError::Limit));
        let mut rows = vec![1, 2, 3];
        let p = Page { after: 0, limit: 2 };
        assert_eq!(p.finish(&mut rows, |r| *r as i64), Some(encode(2)));
        assert_eq!(rows, vec![1, 2]);
    }
}
