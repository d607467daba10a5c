//! The application layer the edges share: read-side access rules and the conversion of read-model
//! rows to output types, per context, used by REST (`routes`), GraphQL, `/ws` and the CLI alike.
//! Writes go through `commands`, which own their whole sequence (loads, checks, limits); what is
//! here only reads (or, like `chat::mark_read`, runs one command and renders its answer).

pub mod budget;
pub mod chat;

/// Money on the wire: a JSON number with the currency's two decimals (`serialize_with`).
pub fn money<S: serde::Serializer>(d: &rust_decimal::Decimal, s: S) -> Result<S::Ok, S::Error> {
    let mut d = *d;
    d.rescale(2);
    rust_decimal::serde::arbitrary_precision::serialize(&d, s)
}
