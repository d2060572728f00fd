//! Adapters for running envplane on AWS: every port of `envplane-core` on the AWS
//! service that carries it in production.

pub mod dynamodb;
pub mod emulator;
pub mod kms;
pub mod s3;
pub mod secrets;
