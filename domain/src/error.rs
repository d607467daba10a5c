//! How domain errors are classified, so the edge can map them to status codes without knowing
//! every aggregate.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    Validation,
    Forbidden,
}

pub trait DomainError: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> ErrorKind;
}
