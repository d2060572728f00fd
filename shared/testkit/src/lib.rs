//! Conformance suites for the ports. Every adapter of a port runs the same suite, so the
//! local and the AWS adapters cannot drift apart in behaviour.

pub mod key_ring;
pub mod store;
