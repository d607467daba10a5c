//! Moderation filters: the lab's list of banned phrases (one `FilterSet` stream, id `global`), and
//! the matcher that masks them. A phrase is a plain word or phrase (case-insensitive, whole word) or
//! a `regex:` pattern for the `regex` crate (size-limited). Replacing the list needs the next
//! version (current + 1), so two admins editing at once cannot silently overwrite each other.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::{DomainError, ErrorKind};

/// The one filter stream.
pub const FILTERS_ID: &str = "global";
pub const MAX_PHRASES: usize = 500;
/// Characters of one phrase (a `regex:` pattern included).
pub const MAX_PHRASE_CHARS: usize = 256;
/// Compiled size limit of one pattern (the `regex` crate's `size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 64 * 1024;
/// Lazy DFA cache of one pattern.
pub const REGEX_DFA_LIMIT: usize = 256 * 1024;

const REGEX_PREFIX: &str = "regex:";

#[derive(Debug, Clone, PartialEq)]
pub enum FilterCommand {
    Replace {
        phrases: Vec<String>,
        version: i64,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FilterEvent {
    FiltersReplaced {
        phrases: Vec<String>,
        version: i64,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for FilterEvent {
    fn event_type(&self) -> String {
        "FiltersReplaced".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("version must be {expected} (the current version + 1)")]
    VersionConflict { expected: i64 },
    #[error("{0}")]
    Invalid(String),
}

impl DomainError for FilterError {
    fn kind(&self) -> ErrorKind {
        match self {
            FilterError::VersionConflict { .. } => ErrorKind::Conflict,
            FilterError::Invalid(_) => ErrorKind::Validation,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterSet {
    pub phrases: Vec<String>,
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Aggregate for FilterSet {
    const TYPE: &'static str = "filters";
    type Command = FilterCommand;
    type Event = FilterEvent;
    type Error = FilterError;
    type Services = ();

    async fn handle(
        &mut self,
        cmd: FilterCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), FilterError> {
        let FilterCommand::Replace {
            phrases,
            version,
            at,
        } = cmd;
        if version != self.version + 1 {
            return Err(FilterError::VersionConflict {
                expected: self.version + 1,
            });
        }
        let phrases = normalise(phrases)?;
        Matcher::compile(&phrases)?;
        sink.write(
            FilterEvent::FiltersReplaced {
                phrases,
                version,
                at,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, e: FilterEvent) {
        let FilterEvent::FiltersReplaced {
            phrases,
            version,
            at,
        } = e;
        self.phrases = phrases;
        self.version = version;
        self.updated_at = Some(at);
    }
}

/// Trims phrases, drops exact duplicates, and checks the limits.
fn normalise(phrases: Vec<String>) -> Result<Vec<String>, FilterError> {
    if phrases.len() > MAX_PHRASES {
        return Err(FilterError::Invalid(format!(
            "at most {MAX_PHRASES} phrases"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(phrases.len());
    for (i, p) in phrases.into_iter().enumerate() {
        let p = p.trim().to_string();
        let body = p.strip_prefix(REGEX_PREFIX).unwrap_or(&p);
        if body.trim().is_empty() {
            return Err(FilterError::Invalid(format!("phrases[{i}] is empty")));
        }
        if p.chars().count() > MAX_PHRASE_CHARS || p.chars().any(char::is_control) {
            return Err(FilterError::Invalid(format!(
                "phrases[{i}] must be at most {MAX_PHRASE_CHARS} characters without control characters"
            )));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// What a text looks like after the filters: masked, and which phrases matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub text: String,
    pub matches: Vec<String>,
}

/// The compiled phrases of one filter version.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    rules: Vec<(String, Regex)>,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Matcher {
    pub fn compile(phrases: &[String]) -> Result<Matcher, FilterError> {
        let mut rules = Vec::with_capacity(phrases.len());
        for (i, p) in phrases.iter().enumerate() {
            let pattern = match p.strip_prefix(REGEX_PREFIX) {
                Some(re) => re.to_string(),
                None => {
                    // Whole word: a word boundary where the phrase starts or ends with a word
                    // character; inner whitespace matches any run of whitespace.
                    let words: Vec<String> = p.split_whitespace().map(regex::escape).collect();
                    let mut s = String::from("(?i)");
                    if p.starts_with(is_word) {
                        s.push_str(r"\b");
                    }
                    s.push_str(&words.join(r"\s+"));
                    if p.ends_with(is_word) {
                        s.push_str(r"\b");
                    }
                    s
                }
            };
            let re = RegexBuilder::new(&pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_DFA_LIMIT)
                .build()
                .map_err(|e| {
                    let why = match e {
                        regex::Error::CompiledTooBig(_) => {
                            format!("is too large (compiled size limit {REGEX_SIZE_LIMIT} bytes)")
                        }
                        other => format!("is not a valid pattern: {other}"),
                    };
                    FilterError::Invalid(format!("phrases[{i}] {why}"))
                })?;
            if re.is_match("") {
                return Err(FilterError::Invalid(format!(
                    "phrases[{i}] matches the empty text"
                )));
            }
            rules.push((p.clone(), re));
        }
        Ok(Matcher { rules })
    }

    /// Masks every match with `*` (one per character) and lists the phrases that matched.
    pub fn apply(&self, text: &str) -> Filtered {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut matches = Vec::new();
        for (phrase, re) in &self.rules {
            let mut hit = false;
            for m in re.find_iter(text) {
                if m.start() < m.end() {
                    ranges.push((m.start(), m.end()));
                    hit = true;
                }
            }
            if hit {
                matches.push(phrase.clone());
            }
        }
        if ranges.is_empty() {
            return Filtered {
                text: text.to_string(),
                matches,
            };
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for (start, end) in ranges {
            let start = start.max(pos);
            if start >= end {
                continue;
            }
            out.push_str(&text[pos..start]);
            out.extend(std::iter::repeat_n('*', text[start..end].chars().count()));
            pos = end;
        }
        out.push_str(&text[pos..]);
        Filtered { text: out, matches }
    }
}

/// Compiled matchers are cached by version: compiling 500 patterns per message would be waste.
#[derive(Debug, Default)]
pub struct MatcherCache {
    current: std::sync::Mutex<Option<(i64, Arc<Matcher>)>>,
}

impl MatcherCache {
    pub fn get(&self, set: &FilterSet) -> Arc<Matcher> {
        let mut cur = self.current.lock().expect("matcher cache poisoned");
        if let Some((v, m)) = cur.as_ref() {
            if *v == set.version {
                return m.clone();
            }
        }
        // The stored phrases compiled when they were accepted; limits have not shrunk since.
        let m = Arc::new(Matcher::compile(&set.phrases).unwrap_or_default());
        *cur = Some((set.version, m.clone()));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    fn matcher(p: &[&str]) -> Matcher {
        Matcher::compile(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn words_are_case_insensitive_whole_words() {
        let m = matcher(&["badword", "two words"]);
        let f = m.apply("A BadWord, not badwords; Two   WORDS!");
        assert_eq!(f.text, "A *******, not badwords; ***********!");
        assert_eq!(f.matches, vec!["badword", "two words"]);
        assert_eq!(m.apply("clean").matches, Vec::<String>::new());
    }

    #[test]
    fn regex_phrases_and_overlaps() {
        let m = matcher(&["regex:^foo.*$", "bar"]);
        let f = m.apply("foo bar baz");
        assert_eq!(f.text, "***********");
        assert_eq!(f.matches, vec!["regex:^foo.*$", "bar"]);
        let f = m.apply("héllo bar");
        assert_eq!(f.text, "héllo ***");
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let bad = |p: &str| Matcher::compile(&[p.to_string()]).unwrap_err();
        assert!(
            matches!(bad("regex:(unclosed"), FilterError::Invalid(m) if m.contains("not a valid"))
        );
        assert!(
            matches!(bad("regex:\\w{1000}\\w{1000}\\w{1000}"), FilterError::Invalid(m) if m.contains("too large"))
        );
        assert!(matches!(bad("regex:a*"), FilterError::Invalid(m) if m.contains("empty")));
        assert!(normalise(vec!["x".repeat(MAX_PHRASE_CHARS + 1)]).is_err());
        assert!(normalise(vec![" ".into()]).is_err());
        assert!(normalise(vec!["regex:".into()]).is_err());
        assert!(normalise(vec!["a".into(); MAX_PHRASES + 1]).is_err());
    }

    #[tokio::test]
    async fn versions_go_up_by_one() {
        let t = DateTime::UNIX_EPOCH;
        let replace = |v: i64| FilterCommand::Replace {
            phrases: vec!["badword".into(), " badword ".into()],
            version: v,
            at: t,
        };
        TestFramework::<FilterSet>::with(())
            .given_no_previous_events()
            .when_async(replace(2))
            .await
            .then_expect_error(FilterError::VersionConflict { expected: 1 });
        TestFramework::<FilterSet>::with(())
            .given(vec![FilterEvent::FiltersReplaced {
                phrases: vec![],
                version: 1,
                at: t,
            }])
            .when_async(replace(2))
            .await
            .then_expect_events(vec![FilterEvent::FiltersReplaced {
                phrases: vec!["badword".into()],
                version: 2,
                at: t,
            }]);
        let r = TestFramework::<FilterSet>::with(())
            .given_no_previous_events()
            .when_async(FilterCommand::Replace {
                phrases: vec!["regex:(".into()],
                version: 1,
                at: t,
            })
            .await
            .inspect_result();
        assert!(matches!(r, Err(FilterError::Invalid(_))));
    }

    fn case_variant(word: &str, flips: &[bool]) -> String {
        word.chars()
            .zip(flips.iter().cycle())
            .map(|(c, up)| {
                if *up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        /// A banned word never gets through, in any letter case, wherever it stands in a text.
        #[test]
        fn banned_word_never_passes(
            word in "[a-z]{2,12}",
            flips in proptest::collection::vec(any::<bool>(), 1..12),
            before in "[ a-z0-9.,!?]{0,20}",
            after in "[ a-z0-9.,!?]{0,20}",
        ) {
            let m = matcher(&[&word]);
            let text = format!("{before} {} {after}", case_variant(&word, &flips));
            let out = m.apply(&text);
            prop_assert!(out.matches == vec![word.clone()]);
            let leaked = out
                .text
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|tok| tok.eq_ignore_ascii_case(&word));
            prop_assert!(!leaked, "{:?} leaked in {:?}", word, out.text);
            prop_assert_eq!(out.text.chars().count(), text.chars().count());
        }
    }
}
