//! envplane's domain: the objects teams manage, the rules that guard them, the use
//! cases the API calls, and the ports (traits) the adapters implement.
//!
//! Nothing in here knows about HTTP servers, SQLite or AWS.

pub mod auth;
pub mod cost;
pub mod deployment;
pub mod drift;
pub mod error;
pub mod github;
pub mod ids;
pub mod model;
pub mod notification;
pub mod ports;
pub mod region;
pub mod schedule;
pub mod service;
pub mod spend;
pub mod validate;

pub use error::{Error, Result};
pub use secrecy;
pub use service::Platform;
