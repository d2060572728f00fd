//! `envplane-runner`: the program that runs inside every deployment sandbox.
//!
//! The library holds its parts, each tested without a sandbox:
//! - [`api_socket`]: reaching the API through the socket the launcher binds in,
//! - [`client`]: the runner API (job, logs, steps, plan, result),
//! - [`deploy`]: one phase from clone to report,
//! - [`flow`]: the custom-flow hooks declared in a template's `envplane.yml`,
//! - [`iac`]: finding (or downloading and verifying) the exact Terraform binary,
//! - [`logs`]: shipping masked log chunks,
//! - [`mask`]: streaming masking of sensitive values in the deployment log,
//! - [`release_signature`]: the keys a Terraform release's SHA256SUMS must be signed by,
//! - [`process`]: running commands with their output logged, and interrupts,
//! - [`terraform`]: Terraform's files and output (backend override, plan summary).

pub mod api_socket;
pub mod client;
pub mod deploy;
pub mod flow;
pub mod iac;
pub mod logs;
pub mod mask;
pub mod process;
pub mod release_signature;
pub mod terraform;
