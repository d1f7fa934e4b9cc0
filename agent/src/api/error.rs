//! API errors and their one mapping to HTTP statuses and Kubernetes `Status` objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::manifest::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("the server could not find the requested resource: {0}")]
    NoRoute(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Validation failed; each cause names a field. `about` is the object's kind and name
    /// (kubectl prints `The Pod "web" is invalid: ...` from them).
    #[error("{summary}")]
    Invalid {
        summary: String,
        causes: Vec<FieldError>,
        about: Option<(String, String)>,
    },
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// The request's deadline (`timeout`) passed, or a revision it waits for did not come.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
    /// A server-side apply's conflicts: (message, field) per conflicting field, and the
    /// resource and name they are of.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<(String, String)>,
        about: (String, String),
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::NotFound(_) | ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::ApplyConflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            ApiError::Store(e) => match e {
                StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
                StoreError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
                StoreError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
                StoreError::Compacted { .. } | StoreError::Expired(_) => {
                    (StatusCode::GONE, "Expired")
                }
                StoreError::Precondition(_) => (StatusCode::CONFLICT, "Conflict"),
                StoreError::Incomplete(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
                StoreError::Taken(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            },
        }
    }

    /// The Kubernetes `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let (code, reason) = self.status();
        let mut message = self.to_string();
        if let ApiError::Store(e) = self
            && matches!(code, StatusCode::INTERNAL_SERVER_ERROR)
        {
            // Include the source chain: "database error: disk I/O error".
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                message.push_str(&format!(": {s}"));
                src = s.source();
            }
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        });
        if let ApiError::ApplyConflict { causes, about, .. } = self {
            status["details"] = json!({
                "name": about.1,
                "kind": about.0,
                "causes": causes.iter().map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": m, "field": f})).collect::<Vec<_>>(),
            });
        }
        if let ApiError::Invalid { causes, about, .. } = self {
            status["details"] = json!({
                "causes": causes.iter().map(|c| json!({"reason": "FieldValueInvalid", "field": c.path, "message": c.message})).collect::<Vec<_>>()
            });
            if let Some((kind, name)) = about {
                status["details"]["kind"] = json!(kind);
                status["details"]["name"] = json!(name);
            }
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.status();
        if code.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (code, axum::Json(self.to_status())).into_response()
    }
}
