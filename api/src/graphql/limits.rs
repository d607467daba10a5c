//! The query-size limit, as a schema extension so that it guards HTTP and WebSocket requests alike
//! (depth and complexity are async-graphql's own limits).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, Variables};

/// Refuses a query text longer than this many bytes before parsing it.
pub struct QuerySize(pub usize);

impl ExtensionFactory for QuerySize {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QuerySizeCheck(self.0))
    }
}

struct QuerySizeCheck(usize);

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
            let mut e = ServerError::new(
                format!(
                    "query is {} bytes, more than the limit of {}",
                    query.len(),
                    self.0
                ),
                None,
            );
            let mut ext = async_graphql::ErrorExtensionValues::default();
            ext.set("code", "VALIDATION_ERROR");
            e.extensions = Some(ext);
            return Err(e);
        }
        next.run(ctx, query, variables).await
    }
}
