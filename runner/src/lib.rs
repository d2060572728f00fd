//! `envplane-runner`: the program that runs inside every deployment sandbox.
//!
//! The library holds the parts that are tested without a sandbox:
//! - [`mask`]: streaming masking of sensitive values in the deployment log,
//! - [`iac`]: finding (or downloading and verifying) the exact Terraform binary,
//! - [`flow`]: the custom-flow hooks declared in a template's `envplane.yml`.

pub mod client;
pub mod deploy;
pub mod flow;
pub mod iac;
pub mod logs;
pub mod mask;
pub mod process;
pub mod terraform;
