//! Tool errors: `{"code", "reason", "operation_id"}` with the reference
//! spec's codes, API statuses mapped onto them.

use reqwest::StatusCode;

use crate::api::ApiError;
use crate::search::UnsafeValue;

/// A failed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    pub code: &'static str,
    pub reason: String,
}

impl ToolError {
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// `INVALID_REQUEST`.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::new("INVALID_REQUEST", reason)
    }

    /// An API failure: `404` becomes `not_found`, `400` `INVALID_REQUEST`,
    /// `401` `UNAUTHORIZED`, `403` `FORBIDDEN`; anything else (5xx,
    /// transport, bodies) the tool's own code `otherwise` (the reference's
    /// per-tool codes such as `CREATE_FAILED`).
    pub fn api(e: &ApiError, not_found: &'static str, otherwise: &'static str) -> Self {
        let code = match e {
            ApiError::Token(_) => "UNAUTHORIZED",
            ApiError::Status { status, .. } => match *status {
                StatusCode::NOT_FOUND => not_found,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "INVALID_REQUEST",
                StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
                StatusCode::FORBIDDEN => "FORBIDDEN",
                s if s.is_server_error() => "INTERNAL",
                _ => otherwise,
            },
            _ => otherwise,
        };
        Self::new(code, e.to_string())
    }

    /// The error text of the tool result.
    pub fn to_json(&self, operation_id: &str) -> String {
        serde_json::json!({
            "code": self.code,
            "reason": self.reason,
            "operation_id": operation_id,
        })
        .to_string()
    }
}

impl From<UnsafeValue> for ToolError {
    fn from(e: UnsafeValue) -> Self {
        ToolError::new("INVALID_SEARCH_VALUE", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> ApiError {
        ApiError::Status {
            status: StatusCode::from_u16(s).unwrap_or(StatusCode::IM_A_TEAPOT),
            reason: "r".into(),
        }
    }

    #[test]
    fn statuses_map_onto_the_catalog() {
        let code = |s| ToolError::api(&status(s), "SESSION_NOT_FOUND", "CREATE_FAILED").code;
        assert_eq!(code(404), "SESSION_NOT_FOUND");
        assert_eq!(code(400), "INVALID_REQUEST");
        assert_eq!(code(401), "UNAUTHORIZED");
        assert_eq!(code(403), "FORBIDDEN");
        assert_eq!(code(500), "INTERNAL");
        assert_eq!(code(409), "CREATE_FAILED");
        let e = ToolError::new("X", "why").to_json("get_session");
        assert_eq!(
            e,
            r#"{"code":"X","operation_id":"get_session","reason":"why"}"#
        );
    }
}
