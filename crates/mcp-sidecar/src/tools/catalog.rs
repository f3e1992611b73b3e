//! The tool catalog: the reference's 16 tools with their names, parameter
//! names and types, and descriptions (`tools/list`).

use std::sync::Arc;

use rmcp::model::Tool;
use serde_json::{Map, Value, json};

/// A parameter: name, JSON type, description, required.
struct Param(&'static str, &'static str, &'static str, bool);

const PAGE: Param = Param(
    "page",
    "number",
    "Page number (1-indexed). Default: 1.",
    false,
);
const SIZE: Param = Param("size", "number", "Page size. Default: 20. Max: 100.", false);

fn tool(name: &'static str, description: &'static str, params: &[Param]) -> Tool {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for Param(pname, ty, desc, req) in params {
        let mut prop = json!({"type": ty, "description": desc});
        if *pname == "phase" {
            prop["enum"] = json!(["Pending", "Running", "Completed", "Failed"]);
        }
        if *ty == "object" {
            prop["additionalProperties"] = json!({"type": "string"});
        }
        properties.insert((*pname).to_owned(), prop);
        if *req {
            required.push(Value::from(*pname));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    Tool::new(name, description, Arc::new(schema))
}

/// Every tool, in the reference's order.
pub fn tools() -> Vec<Tool> {
    vec![
        tool(
            "list_sessions",
            "List sessions visible to the caller, with optional filters.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Filter to sessions belonging to this project ID.",
                    false,
                ),
                Param("phase", "string", "Filter by session phase.", false),
                PAGE,
                SIZE,
            ],
        ),
        tool(
            "get_session",
            "Returns full detail for a single session.",
            &[Param("session_id", "string", "Session ID.", true)],
        ),
        tool(
            "create_session",
            "Creates and starts a new agentic session. Returns the session in Pending phase.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID in which to create the session.",
                    true,
                ),
                Param("prompt", "string", "Task prompt for the session.", true),
                Param(
                    "agent_id",
                    "string",
                    "Agent ID to execute the session.",
                    false,
                ),
                Param(
                    "model",
                    "string",
                    "LLM model override (e.g. 'claude-sonnet-4-6').",
                    false,
                ),
                Param(
                    "parent_session_id",
                    "string",
                    "Calling session ID for agent-to-agent delegation.",
                    false,
                ),
                Param(
                    "name",
                    "string",
                    "Human-readable session name (default: from the prompt).",
                    false,
                ),
            ],
        ),
        tool(
            "push_message",
            "Appends a user message to a session's message log. Supports @mention syntax for agent delegation.",
            &[
                Param("session_id", "string", "ID of the target session.", true),
                Param(
                    "text",
                    "string",
                    "Message text. May contain @agent_id or @agent_name mentions to trigger delegation.",
                    true,
                ),
            ],
        ),
        tool(
            "patch_session_labels",
            "Merges key-value label pairs into a session's labels field. Empty-string values delete a key.",
            &[
                Param("session_id", "string", "ID of the session to update.", true),
                Param("labels", "object", "Key-value label pairs to merge.", true),
            ],
        ),
        tool(
            "patch_session_annotations",
            "Merges key-value annotation pairs into a session's annotations field. Annotations are arbitrary string metadata — a programmable state store scoped to the session lifetime.",
            &[
                Param("session_id", "string", "ID of the session to update.", true),
                Param(
                    "annotations",
                    "object",
                    "Key-value annotation pairs to merge. Keys use reverse-DNS prefix convention (e.g. 'myapp.io/status'). Empty-string values delete a key.",
                    true,
                ),
            ],
        ),
        tool(
            "watch_session_messages",
            "Subscribes to a session's message stream. Messages are pushed as notifications/progress events (with a progressToken) or as logging notifications; a final notification says when the session has ended.",
            &[
                Param("session_id", "string", "ID of the session to watch.", true),
                Param(
                    "after_seq",
                    "number",
                    "Deliver only messages with seq > after_seq. Default: 0 (replay all).",
                    false,
                ),
            ],
        ),
        tool(
            "unwatch_session_messages",
            "Cancels an active watch_session_messages subscription.",
            &[Param(
                "subscription_id",
                "string",
                "Subscription ID returned by watch_session_messages.",
                true,
            )],
        ),
        tool(
            "list_agents",
            "Lists agents visible to the caller.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID to list agents for.",
                    true,
                ),
                Param(
                    "search",
                    "string",
                    "Search filter (e.g. \"name like 'code-%'\").",
                    false,
                ),
                PAGE,
                SIZE,
            ],
        ),
        tool(
            "get_agent",
            "Returns detail for a single agent by ID or name.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID the agent belongs to.",
                    true,
                ),
                Param("agent_id", "string", "Agent ID (UUID) or agent name.", true),
            ],
        ),
        tool(
            "create_agent",
            "Creates a new agent.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID to create the agent in.",
                    true,
                ),
                Param(
                    "name",
                    "string",
                    "Agent name. Must be unique. Alphanumeric, hyphens, underscores only.",
                    true,
                ),
                Param(
                    "prompt",
                    "string",
                    "System prompt defining the agent's persona and behavior.",
                    true,
                ),
            ],
        ),
        tool(
            "update_agent",
            "Updates an agent's prompt, labels, or annotations. Creates a new immutable version.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID the agent belongs to.",
                    true,
                ),
                Param("agent_id", "string", "Agent ID (UUID).", true),
                Param("prompt", "string", "New system prompt.", false),
                Param(
                    "labels",
                    "object",
                    "Labels to merge. Empty-string values delete a key.",
                    false,
                ),
                Param(
                    "annotations",
                    "object",
                    "Annotations to merge. Empty-string values delete a key.",
                    false,
                ),
            ],
        ),
        tool(
            "patch_agent_annotations",
            "Merges key-value annotation pairs into an Agent's annotations. Agent annotations are persistent across sessions — use them for durable agent state.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID the agent belongs to.",
                    true,
                ),
                Param("agent_id", "string", "Agent ID (UUID) or agent name.", true),
                Param(
                    "annotations",
                    "object",
                    "Key-value annotation pairs to merge. Empty-string values delete a key.",
                    true,
                ),
            ],
        ),
        tool(
            "list_projects",
            "Lists projects visible to the caller.",
            &[PAGE, SIZE],
        ),
        tool(
            "get_project",
            "Returns detail for a single project by ID or name.",
            &[Param(
                "project_id",
                "string",
                "Project ID (UUID) or project name.",
                true,
            )],
        ),
        tool(
            "patch_project_annotations",
            "Merges key-value annotation pairs into a Project's annotations. Project annotations are the widest-scope state store — visible to every agent and session in the project.",
            &[
                Param(
                    "project_id",
                    "string",
                    "Project ID (UUID) or project name.",
                    true,
                ),
                Param(
                    "annotations",
                    "object",
                    "Key-value annotation pairs to merge. Empty-string values delete a key.",
                    true,
                ),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_distinct_tools_with_object_schemas() {
        let tools = tools();
        assert_eq!(tools.len(), 16);
        let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 16);
        for t in &tools {
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
        }
    }
}
