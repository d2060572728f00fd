//! Adapters for running envplane on AWS: every port of `envplane-core` on the AWS
//! service that carries it in production.

pub mod config;
pub mod cost_explorer;
pub mod deployer;
pub mod dynamodb;
pub mod ecs;
#[cfg(any(test, feature = "emulator"))]
pub mod emulator;
mod error_code;
pub mod kms;
pub mod launch_file;
pub mod lazy;
pub mod ops;
pub mod reaper;
pub mod reports;
pub mod s3;
pub mod secrets;
pub mod sqs;
pub mod task_events;
