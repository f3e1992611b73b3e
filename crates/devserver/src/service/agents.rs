//! Project agents and their inboxes. An agent is addressed under its project;
//! an agent of another project is refused (403), as on the reference.

use ambient_protocol::v1::{EventType, InboxMessage};
use futures::{Stream, StreamExt as _};

use super::{
    Api, Caller, ListQuery, Page, rename, replace_json_object, required, resource_event, set,
};
use crate::error::ApiError;
use crate::events::{Kind, Resource};
use crate::ids::new_id;
use crate::labels;
use crate::model::{Agent, AgentFields, InboxFields};
use crate::search::Expr;
use crate::store::{Stored, Tx};
use crate::time::now;

/// The reference's defaults for an agent created without LLM settings.
const DEFAULT_LLM_MODEL: &str = "claude-sonnet-4-6";
const DEFAULT_LLM_TEMPERATURE: f64 = 0.7;
const DEFAULT_LLM_MAX_TOKENS: i32 = 4000;

/// The agent `id`, which must belong to `project_id`.
fn agent_in(tx: &Tx<'_>, project_id: &str, id: &str) -> Result<Agent, ApiError> {
    let agent = tx
        .get::<Agent>(id)?
        .ok_or_else(|| ApiError::not_found(Agent::KIND, id))?;
    if agent.project_id != project_id {
        return Err(ApiError::Forbidden(
            "agent does not belong to this project".into(),
        ));
    }
    Ok(agent)
}

impl Api {
    /// Creates an agent in project `project_id` (the path's: a body
    /// `project_id` is ignored) owned by `caller`; `name` required.
    pub async fn create_agent(
        &self,
        caller: &Caller,
        project_id: &str,
        f: AgentFields,
    ) -> Result<Agent, ApiError> {
        let name = required("name", f.name)?;
        let labels = labels::normalize("labels", f.labels)?;
        let annotations = labels::normalize("annotations", f.annotations)?;
        let (project_id, owner) = (project_id.to_owned(), caller.0.clone());
        self.store
            .write(move |tx| {
                let at = now();
                let agent = Agent {
                    id: new_id()?,
                    created_at: at,
                    updated_at: at,
                    project_id,
                    parent_agent_id: f.parent_agent_id,
                    owner_user_id: owner,
                    name,
                    display_name: f.display_name,
                    description: f.description,
                    prompt: f.prompt,
                    repo_url: f.repo_url,
                    workflow_id: f.workflow_id,
                    llm_model: f.llm_model.or_else(|| Some(DEFAULT_LLM_MODEL.into())),
                    llm_temperature: f.llm_temperature.or(Some(DEFAULT_LLM_TEMPERATURE)),
                    llm_max_tokens: f.llm_max_tokens.or(Some(DEFAULT_LLM_MAX_TOKENS)),
                    bot_account_name: f.bot_account_name,
                    resource_overrides: f.resource_overrides,
                    environment_variables: f.environment_variables,
                    labels,
                    annotations,
                    current_session_id: f.current_session_id,
                };
                tx.put(&agent)?;
                Ok(agent)
            })
            .await
    }

    /// An agent of a project.
    pub async fn get_agent(&self, project_id: &str, id: &str) -> Result<Agent, ApiError> {
        let (project_id, id) = (project_id.to_owned(), id.to_owned());
        self.store
            .read(move |tx| agent_in(tx, &project_id, &id))
            .await
    }

    /// Lists a project's agents.
    pub async fn list_agents(
        &self,
        project_id: &str,
        query: &ListQuery,
    ) -> Result<Page<Agent>, ApiError> {
        self.list(query, Some(Expr::eq("project_id", project_id)))
            .await
    }

    /// Updates the fields given; `labels`/`annotations` replace the stored value.
    pub async fn update_agent(
        &self,
        project_id: &str,
        id: &str,
        f: AgentFields,
    ) -> Result<Agent, ApiError> {
        let (project_id, id) = (project_id.to_owned(), id.to_owned());
        self.store
            .write(move |tx| {
                let mut a = agent_in(tx, &project_id, &id)?;
                rename(&mut a.name, "name", f.name)?;
                set(&mut a.parent_agent_id, f.parent_agent_id);
                set(&mut a.display_name, f.display_name);
                set(&mut a.description, f.description);
                set(&mut a.prompt, f.prompt);
                set(&mut a.repo_url, f.repo_url);
                set(&mut a.workflow_id, f.workflow_id);
                set(&mut a.llm_model, f.llm_model);
                set(&mut a.llm_temperature, f.llm_temperature);
                set(&mut a.llm_max_tokens, f.llm_max_tokens);
                set(&mut a.bot_account_name, f.bot_account_name);
                set(&mut a.resource_overrides, f.resource_overrides);
                set(&mut a.environment_variables, f.environment_variables);
                set(&mut a.current_session_id, f.current_session_id);
                replace_json_object(&mut a.labels, "labels", f.labels)?;
                replace_json_object(&mut a.annotations, "annotations", f.annotations)?;
                a.updated_at = now();
                tx.put(&a)?;
                Ok(a)
            })
            .await
    }

    /// Deletes an agent of a project.
    pub async fn delete_agent(&self, project_id: &str, id: &str) -> Result<(), ApiError> {
        let (project_id, id) = (project_id.to_owned(), id.to_owned());
        self.store
            .write(move |tx| {
                agent_in(tx, &project_id, &id)?;
                tx.delete::<Agent>(&id)?;
                Ok(())
            })
            .await
    }

    // ----- inbox ----------------------------------------------------------

    /// Leaves a message (unread) in an agent's inbox; `body` required.
    pub async fn post_inbox(
        &self,
        project_id: &str,
        agent_id: &str,
        f: InboxFields,
    ) -> Result<InboxMessage, ApiError> {
        let body = required("body", f.body)?;
        let (project_id, agent_id) = (project_id.to_owned(), agent_id.to_owned());
        self.store
            .write(move |tx| {
                agent_in(tx, &project_id, &agent_id)?;
                let at = now();
                let msg = InboxMessage {
                    id: new_id()?,
                    agent_id,
                    from_agent_id: f.from_agent_id,
                    from_name: f.from_name,
                    body,
                    read: Some(false),
                    created_at: Some(at),
                    updated_at: Some(at),
                };
                tx.put(&msg)?;
                tx.publish(resource_event(
                    EventType::Created,
                    Resource::Inbox(Box::new(msg.clone())),
                ));
                Ok(msg)
            })
            .await
    }

    /// An agent's inbox, unread first unless `orderBy` says otherwise.
    pub async fn list_inbox(
        &self,
        project_id: &str,
        agent_id: &str,
        query: &ListQuery,
    ) -> Result<Page<InboxMessage>, ApiError> {
        self.get_agent(project_id, agent_id).await?;
        let mut query = query.clone();
        query.order_by.get_or_insert_with(|| "read asc".into());
        self.list(&query, Some(Expr::eq("agent_id", agent_id)))
            .await
    }

    /// Sets the read flag of an inbox message.
    pub async fn mark_inbox(
        &self,
        project_id: &str,
        agent_id: &str,
        id: &str,
        read: Option<bool>,
    ) -> Result<InboxMessage, ApiError> {
        let (project_id, agent_id, id) =
            (project_id.to_owned(), agent_id.to_owned(), id.to_owned());
        self.store
            .write(move |tx| {
                agent_in(tx, &project_id, &agent_id)?;
                let mut msg = tx
                    .get::<InboxMessage>(&id)?
                    .filter(|m| m.agent_id == agent_id)
                    .ok_or_else(|| ApiError::not_found(InboxMessage::KIND, &id))?;
                set(&mut msg.read, read);
                msg.updated_at = Some(now());
                tx.put(&msg)?;
                Ok(msg)
            })
            .await
    }

    /// Messages posted to `agent_id`'s inbox from now on (live only, no
    /// replay, as on the reference). Ends on shutdown; a watcher that falls
    /// behind gets [`ApiError::Lagged`].
    pub fn watch_inbox(
        &self,
        agent_id: &str,
    ) -> impl Stream<Item = Result<InboxMessage, ApiError>> + Send + 'static {
        let agent_id = agent_id.to_owned();
        self.watch_resources(Kind::Inbox).filter_map(move |e| {
            let mine = match e {
                Err(e) => Some(Err(e)),
                Ok(ev) => match ev.resource {
                    Resource::Inbox(m) if m.agent_id == agent_id => Some(Ok(*m)),
                    _ => None,
                },
            };
            std::future::ready(mine)
        })
    }
}
