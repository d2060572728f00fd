use crate::ports::{ArtifactError, KeyRingError, LaunchError, QueueError, StoreError, VcsError};

/// Every way a use case can fail. The HTTP edge maps each variant to one status once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is well-formed JSON but a value breaks a rule (422).
    #[error("{0}")]
    Invalid(String),
    /// The object does not exist, or belongs to another organization (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request collides with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A body that cannot be read as what the route takes (400).
    #[error("{0}")]
    Malformed(String),
    /// A webhook whose signature does not prove it came from the connected host (401).
    #[error("{0}")]
    Unverified(&'static str),
    /// No key, an unknown key or a revoked key (401).
    #[error("a valid API key is required")]
    Unauthenticated,
    /// The key is valid but its role or scope does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A body over a quota (413).
    #[error("{0}")]
    TooLarge(String),
    /// This region is passive: it changes nothing, the active region does (503).
    #[error("{0}")]
    Passive(String),
    /// Something recorded is not readable here yet (an object the bucket's replication
    /// has not brought): a retry may find it (503).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Vcs(#[from] VcsError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }
}
