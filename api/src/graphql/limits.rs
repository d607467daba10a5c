//! The query limits, as schema extensions so that they guard HTTP and WebSocket requests alike:
//! the query size, and the depth (ours, not async-graphql's, so that the standard introspection
//! query fits), plus the cost rule of paginated fields that async-graphql's complexity limit adds up.
//!
//! Depth counts every field, except `ofType` inside `__schema`/`__type`: a chain of type wrappers
//! is one object per level and ends after a few levels on any schema (this one wraps at most
//! `[T!]!`), so it cannot fan out; graphql-js `getIntrospectionQuery()` nests it 9 deep, which is
//! what made GraphiQL, code generators and fuzzers fail at the default limit. Every other
//! introspection field (`types`, `fields`, `type`, `args`, ...) counts, so `fields { type {
//! fields { ... } } }` fan-outs stay bounded by the same limit as the real schema.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, ServerError, ServerResult, Variables};
use projections::page::{DEFAULT_LIMIT, MAX_LIMIT};

/// The fixed cost of one paginated field: one database query, whatever its page size.
pub const PAGE_BASE_COST: usize = 100;

/// The cost of a root field that reads one row or aggregate (`item`, `chat`, `debt`, ...), plus
/// what is selected under it: with the default limit about as many lookups fit in a request as
/// did when every field cost one and the limit was 500.
pub const LOOKUP_COST: usize = 20;

/// At most this many `__schema`/`__type` fields in one document (aliases and fragment uses
/// count): each walks the whole schema in memory, and their cost is not otherwise weighted.
pub const MAX_INTROSPECTION_FIELDS: usize = 5;

/// Complexity of a paginated field: [`PAGE_BASE_COST`] plus its page size (`first`, default 50,
/// clamped to 1..=200 as the resolver will) times the complexity of what is selected under it.
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let n = i64::from(first.unwrap_or(DEFAULT_LIMIT as i32)).clamp(1, MAX_LIMIT) as usize;
    PAGE_BASE_COST.saturating_add(n.saturating_mul(child_complexity))
}

/// Refuses a query text longer than this many bytes before parsing it.
pub struct QuerySize(pub usize);

impl ExtensionFactory for QuerySize {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QuerySizeCheck(self.0))
    }
}

struct QuerySizeCheck(usize);

fn validation_error(message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", "VALIDATION_ERROR");
    e.extensions = Some(ext);
    e
}

#[async_trait::async_trait]
impl Extension for QuerySizeCheck {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > self.0 {
            return Err(validation_error(format!(
                "query is {} bytes, more than the limit of {}",
                query.len(),
                self.0
            )));
        }
        next.run(ctx, query, variables).await
    }
}

/// Refuses a document any operation of which nests deeper than this (see the module's rule).
pub struct Depth(pub usize);

impl ExtensionFactory for Depth {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DepthCheck(self.0))
    }
}

struct DepthCheck(usize);

#[async_trait::async_trait]
impl Extension for DepthCheck {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let roots = introspection_fields(&doc);
        if roots > MAX_INTROSPECTION_FIELDS {
            return Err(validation_error(format!(
                "the query has {roots} introspection fields (__schema, __type), more than the \
                 limit of {MAX_INTROSPECTION_FIELDS}"
            )));
        }
        let depth = document_depth(&doc);
        if depth > self.0 {
            return Err(validation_error(format!(
                "Query is nested too deep: depth {depth}, more than the limit of {} \
                 (introspection's ofType chains do not count)",
                self.0
            )));
        }
        Ok(doc)
    }
}

/// The deepest operation of `doc`. Linear in the document: each fragment is measured once per
/// context (inside introspection or not); a fragment cycle counts nothing (validation refuses it).
pub fn document_depth(doc: &ExecutableDocument) -> usize {
    let mut walk = DepthWalk {
        doc,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    doc.operations
        .iter()
        .map(|(_, op)| walk.set(&op.node.selection_set.node, false))
        .max()
        .unwrap_or(0)
}

/// How many `__schema`/`__type` fields `doc` selects, each fragment counted at each use.
pub fn introspection_fields(doc: &ExecutableDocument) -> usize {
    let mut walk = DepthWalk {
        doc,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    doc.operations.iter().fold(0, |n, (_, op)| {
        n.saturating_add(walk.roots(&op.node.selection_set.node))
    })
}

struct DepthWalk<'a> {
    doc: &'a ExecutableDocument,
    memo: HashMap<(&'a Name, bool), usize>,
    visiting: HashSet<&'a Name>,
}

impl<'a> DepthWalk<'a> {
    fn set(&mut self, set: &'a SelectionSet, introspection: bool) -> usize {
        let mut deepest = 0;
        for item in &set.items {
            let d = match &item.node {
                Selection::Field(f) => {
                    let name = f.node.name.node.as_str();
                    let inner = introspection || name == "__schema" || name == "__type";
                    let own = usize::from(!(introspection && name == "ofType"));
                    own + self.set(&f.node.selection_set.node, inner)
                }
                Selection::InlineFragment(i) => self.set(&i.node.selection_set.node, introspection),
                Selection::FragmentSpread(s) => {
                    self.fragment(&s.node.fragment_name.node, introspection)
                }
            };
            deepest = deepest.max(d);
        }
        deepest
    }

    /// Introspection fields under `set` (memoized per fragment with `introspection` = true).
    fn roots(&mut self, set: &'a SelectionSet) -> usize {
        let mut n = 0usize;
        for item in &set.items {
            let here = match &item.node {
                Selection::Field(f) => match f.node.name.node.as_str() {
                    "__schema" | "__type" => 1,
                    _ => self.roots(&f.node.selection_set.node),
                },
                Selection::InlineFragment(i) => self.roots(&i.node.selection_set.node),
                Selection::FragmentSpread(s) => {
                    let name = &s.node.fragment_name.node;
                    if let Some(d) = self.memo.get(&(name, true)) {
                        *d
                    } else if let Some(def) = self.doc.fragments.get(name) {
                        if self.visiting.insert(name) {
                            let d = self.roots(&def.node.selection_set.node);
                            self.visiting.remove(name);
                            self.memo.insert((name, true), d);
                            d
                        } else {
                            0
                        }
                    } else {
                        0
                    }
                }
            };
            n = n.saturating_add(here);
        }
        n
    }

    fn fragment(&mut self, name: &'a Name, introspection: bool) -> usize {
        if let Some(d) = self.memo.get(&(name, introspection)) {
            return *d;
        }
        let Some(def) = self.doc.fragments.get(name) else {
            return 0;
        };
        if !self.visiting.insert(name) {
            return 0;
        }
        let d = self.set(&def.node.selection_set.node, introspection);
        self.visiting.remove(name);
        self.memo.insert((name, introspection), d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(q: &str) -> usize {
        document_depth(&async_graphql::parser::parse_query(q).unwrap())
    }

    #[test]
    fn depth_counts_fields_fragments_and_not_introspection_of_type() {
        assert_eq!(depth("{ a { b { c } } d }"), 3);
        assert_eq!(depth("query { a { ...F } } fragment F on T { b { c } }"), 3);
        assert_eq!(depth("{ a { ... on T { b } } }"), 2);
        // ofType is free inside introspection only.
        assert_eq!(
            depth("{ __type(name: \"X\") { ofType { ofType { name } } } }"),
            2
        );
        assert_eq!(depth("{ a { ofType { ofType { name } } } }"), 4);
        // Fan-out fields still count.
        assert_eq!(
            depth("{ __schema { types { fields { type { fields { name } } } } } }"),
            6
        );
        // A fragment used inside and outside introspection is measured in each context.
        assert_eq!(
            depth(
                "{ a { ...R } __type(name: \"X\") { ...R } } fragment R on T { ofType { name } }"
            ),
            3
        );
        // A cycle does not loop (validation refuses it later).
        assert_eq!(depth("{ a { ...F } } fragment F on T { b { ...F } }"), 2);
        assert_eq!(depth("query A { a } query B { b { c } }"), 2);
    }

    #[test]
    fn introspection_fields_count_aliases_and_fragment_uses() {
        let n = |q: &str| introspection_fields(&async_graphql::parser::parse_query(q).unwrap());
        assert_eq!(n("{ __schema { types { name } } __typename }"), 1);
        assert_eq!(
            n("{ a: __schema { types { name } } b: __type(name: \"X\") { name } }"),
            2
        );
        assert_eq!(
            n("{ ...F ...F ...G } fragment F on Query { ...G } fragment G on Query { __schema { types { name } } }"),
            3
        );
        assert_eq!(
            n("{ ...F } fragment F on Query { ...F __schema { types { name } } }"),
            1
        );
    }

    #[test]
    fn page_cost_weights_the_page_size() {
        assert_eq!(page_cost(Some(200), 3), 100 + 600);
        assert_eq!(page_cost(None, 2), 100 + 100);
        assert_eq!(page_cost(Some(10_000), 1), 100 + 200);
        assert_eq!(page_cost(Some(-5), 4), 100 + 4);
    }
}
