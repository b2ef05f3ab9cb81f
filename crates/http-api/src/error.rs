//! [`ApiError`]: every failure an HTTP handler can return, with Consul's status code and
//! plain-text body.

use crate::backend::BackendError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tribune_types::model::ops::{TxnError, WriteRejected};

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404 with a body.
    #[error("{0}")]
    NotFound(String),
    /// 409: a transaction rolled back, answered with Consul's JSON body
    /// (`{"Results":null,"Errors":[…]}`), not plain text.
    #[error("transaction rolled back")]
    TxnConflict(Vec<TxnError>),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 429: a server's rate limit refused the request; another server may not.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: a server's rate limit refused a request only it can serve.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TxnConflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for a 400.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Rejected(WriteRejected::BadRequest(m)) | BackendError::BadRequest(m) => {
                ApiError::BadRequest(m)
            }
            BackendError::Rejected(WriteRejected::NotFound(m)) | BackendError::NotFound(m) => {
                ApiError::NotFound(m)
            }
            BackendError::Rejected(WriteRejected::TxnRolledBack(errors)) => {
                ApiError::TxnConflict(errors)
            }
            BackendError::TooManyRequests(m) => ApiError::TooManyRequests(m),
            BackendError::ServiceUnavailable(m) => ApiError::ServiceUnavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::TxnConflict(errors) = &self {
            let body = crate::dto::output::TxnResponseOut::rolled_back(errors);
            return crate::reply::json_status(status, &body, false);
        }
        crate::reply::text(status, self.to_string())
    }
}
