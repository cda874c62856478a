//! A tool's failure as the agent sees it: a tool result with `isError`, its text the
//! server's message followed by the gRPC code's name (`no VM named "web" (NOT_FOUND)`), its
//! structured content `{"error": {"code": "NOT_FOUND", "message": "..."}}`.

use kcore_client::ClientError;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;
use tonic::Code;

/// Why a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// kcore answered with an error status: its code and message, as kcored wrote them.
    #[error("{message}")]
    Api { code: Code, message: String },
    /// kcore could not be reached or the connection failed.
    #[error("{0}")]
    Unavailable(String),
    /// The arguments do not fit the tool's schema; nothing was sent to kcore.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool exists but this server does not offer it.
    #[error("tool {tool} is not available: {why}")]
    NotOffered { tool: String, why: String },
    /// The VM will not reach what was waited for (stopped, crashed), or not in time.
    #[error("{message}")]
    Wait { code: Code, message: String },
}

impl ToolError {
    /// The gRPC code this error carries (kcore's, or the one that fits a local refusal).
    pub fn code(&self) -> Code {
        match self {
            ToolError::Api { code, .. } | ToolError::Wait { code, .. } => *code,
            ToolError::Unavailable(_) => Code::Unavailable,
            ToolError::InvalidArguments(_) => Code::InvalidArgument,
            ToolError::NotOffered { .. } => Code::PermissionDenied,
        }
    }

    /// The tool result an agent gets.
    pub fn to_result(&self) -> CallToolResult {
        let code = code_name(self.code());
        let message = self.to_string();
        let mut result =
            CallToolResult::error(vec![ContentBlock::text(format!("{message} ({code})"))]);
        result.structured_content = Some(json!({
            "error": { "code": code, "message": message }
        }));
        result
    }

    /// `ok`, or the code and message, for the audit line.
    pub fn outcome(&self) -> String {
        format!("error {}: {self}", code_name(self.code()))
    }
}

impl From<ClientError> for ToolError {
    fn from(e: ClientError) -> ToolError {
        match e {
            ClientError::Api(a) => ToolError::Api {
                code: a.code,
                message: a.message,
            },
            other => ToolError::Unavailable(other.to_string()),
        }
    }
}

/// The canonical name of a gRPC status code, as the gRPC spec and other languages spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_keeps_its_message_and_code() {
        let e = ToolError::from(ClientError::Api(kcore_client::ApiError {
            code: Code::NotFound,
            message: "no VM named \"web\"".into(),
        }));
        let r = e.to_result();
        assert_eq!(r.is_error, Some(true));
        let text = serde_json::to_value(&r.content).expect("json");
        assert_eq!(text[0]["text"], "no VM named \"web\" (NOT_FOUND)");
        assert_eq!(
            r.structured_content,
            Some(json!({"error": {"code": "NOT_FOUND", "message": "no VM named \"web\""}}))
        );
        assert_eq!(e.outcome(), "error NOT_FOUND: no VM named \"web\"");
    }

    #[test]
    fn every_code_has_its_canonical_name() {
        for i in 0..=16 {
            let name = code_name(Code::from_i32(i));
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    }
}
