//! The 16 platform tools: their catalog (names, parameters and
//! descriptions of the reference), argument parsing, the error shape, and
//! each call ([`sessions`], [`agents`], [`projects`]; the two watch tools
//! live in [`crate::watch`]).

pub mod agents;
pub mod args;
pub mod catalog;
pub mod error;
pub mod projects;
pub mod sessions;

pub use args::Args;
pub use error::ToolError;

use serde_json::Value;

/// What a tool returns: a JSON value (shown as indented JSON text) or a
/// tool error.
pub type ToolResult = Result<Value, ToolError>;

/// `page`/`size` query parameters: defaults 1 and 20, size at most 100.
pub fn paging(args: &Args) -> Result<Vec<(&'static str, String)>, ToolError> {
    let page = args.int("page")?.unwrap_or(1);
    let size = args.int("size")?.unwrap_or(20);
    if page < 1 {
        return Err(ToolError::invalid("page must be at least 1"));
    }
    if size < 1 {
        return Err(ToolError::invalid("size must be at least 1"));
    }
    Ok(vec![
        ("page", page.to_string()),
        ("size", size.min(100).to_string()),
    ])
}
