//! What of a failed AWS call may be shown: its error code, never its body.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The error code of a failed AWS call: the service's code (`NotFoundException`, ...)
/// or the kind of transport failure. Never the response body, which may hold a secret.
pub(crate) fn aws_error_code<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(_) => error
            .code()
            .unwrap_or("unrecognized service error")
            .to_string(),
        SdkError::ResponseError(_) => "unparseable response".to_string(),
        // Transport failures (DNS, TLS, connect, timeout): no request or response body.
        _ => DisplayErrorContext(error).to_string(),
    }
}
