//! Conformance suites for the ports, and the fault kit. Every adapter of a port runs the same suite, so the
//! local and the AWS adapters cannot drift apart in behaviour. `seed` makes the objects
//! the handlers' tests start from.

pub mod counting;
pub mod faults;
pub mod github;
pub mod key_ring;
pub mod seed;
pub mod store;
