//! Projects (the ID is the name) and their settings.

use ambient_protocol::v1::{
    CreateProjectRequest, CreateProjectSettingsRequest, EventType, Project, ProjectSettings,
    UpdateProjectRequest, UpdateProjectSettingsRequest,
};

use super::rbac::{PROJECT_OWNER, owner_binding};
use super::{
    Api, Caller, ListQuery, Page, existing, object_ref, rename, replace_json_object, required,
    resource_event, set, touch,
};
use crate::error::ApiError;
use crate::events::Resource;
use crate::ids::new_id;
use crate::labels;
use crate::model::{ProjectRecord, RoleBindingFields};
use crate::store::Stored;
use crate::time::now;

/// Checks a project name (= its ID): `^[a-z][a-z0-9-]*[a-z0-9]$`, 2–63
/// characters (wire.md §2).
pub fn validate_project_name(name: &str) -> Result<&str, ApiError> {
    let bytes = name.as_bytes();
    let ok = (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            "project name must be 2-63 characters of lowercase letters, digits and '-', starting with a letter and not ending with '-'",
        ))
    }
}

impl Api {
    /// Creates a project whose ID is its name (validated, unique: a
    /// duplicate is a conflict), and the caller's `project:owner` binding.
    pub async fn create_project(
        &self,
        caller: &Caller,
        req: CreateProjectRequest,
        prompt: Option<String>,
    ) -> Result<ProjectRecord, ApiError> {
        let name = validate_project_name(&req.name)?.to_owned();
        let labels = labels::normalize("labels", req.labels)?;
        let annotations = labels::normalize("annotations", req.annotations)?;
        let owner = caller.0.clone();
        self.store
            .write(move |tx| {
                let id = name.clone();
                if tx.get::<ProjectRecord>(&id)?.is_some() {
                    return Err(ApiError::Conflict(format!("project {id:?} already exists")));
                }
                let record = ProjectRecord {
                    project: Some(Project {
                        metadata: Some(object_ref(ProjectRecord::KIND, "projects", &id, now())),
                        name,
                        display_name: req.display_name,
                        description: req.description,
                        labels,
                        annotations,
                        status: None,
                    }),
                    prompt,
                };
                tx.put(&record)?;
                tx.publish(resource_event(
                    EventType::Created,
                    Resource::Project(Box::new(record.project.clone().unwrap_or_default())),
                ));
                owner_binding(
                    tx,
                    PROJECT_OWNER,
                    &owner,
                    RoleBindingFields {
                        scope: Some("project".into()),
                        project_id: Some(id),
                        ..RoleBindingFields::default()
                    },
                )?;
                Ok(record)
            })
            .await
    }

    /// A project by ID.
    pub async fn get_project(&self, id: &str) -> Result<ProjectRecord, ApiError> {
        self.get(id).await
    }

    /// Lists projects.
    pub async fn list_projects(&self, query: &ListQuery) -> Result<Page<ProjectRecord>, ApiError> {
        self.list(query, None).await
    }

    /// Updates the fields given; `labels`/`annotations` replace the stored
    /// value. The name is the ID: it cannot change.
    pub async fn update_project(
        &self,
        req: UpdateProjectRequest,
        prompt: Option<String>,
    ) -> Result<ProjectRecord, ApiError> {
        self.store
            .write(move |tx| {
                let mut record: ProjectRecord = existing::<ProjectRecord>(tx, &req.id)?;
                let p = record.project.get_or_insert_with(Project::default);
                if req.name.as_ref().is_some_and(|n| *n != p.name) {
                    return Err(ApiError::invalid(
                        "a project's name is its ID and cannot change",
                    ));
                }
                set(&mut p.display_name, req.display_name);
                set(&mut p.description, req.description);
                replace_json_object(&mut p.labels, "labels", req.labels)?;
                replace_json_object(&mut p.annotations, "annotations", req.annotations)?;
                set(&mut p.status, req.status);
                touch(&mut p.metadata);
                let project = p.clone();
                set(&mut record.prompt, prompt);
                tx.put(&record)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::Project(Box::new(project)),
                ));
                Ok(record)
            })
            .await
    }

    /// Deletes a project.
    pub async fn delete_project(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let record: ProjectRecord = existing::<ProjectRecord>(tx, &id)?;
                tx.delete::<ProjectRecord>(&id)?;
                tx.publish(resource_event(
                    EventType::Deleted,
                    Resource::Project(Box::new(record.project.unwrap_or_default())),
                ));
                Ok(())
            })
            .await
    }

    /// Creates project settings (`project_id` required).
    pub async fn create_project_settings(
        &self,
        req: CreateProjectSettingsRequest,
    ) -> Result<ProjectSettings, ApiError> {
        let project_id = required("project_id", Some(req.project_id))?;
        self.store
            .write(move |tx| {
                let id = new_id()?;
                let settings = ProjectSettings {
                    metadata: Some(object_ref(
                        ProjectSettings::KIND,
                        "project_settings",
                        &id,
                        now(),
                    )),
                    project_id,
                    group_access: req.group_access,
                    repositories: req.repositories,
                };
                tx.put(&settings)?;
                tx.publish(resource_event(
                    EventType::Created,
                    Resource::ProjectSettings(Box::new(settings.clone())),
                ));
                Ok(settings)
            })
            .await
    }

    /// Project settings by ID.
    pub async fn get_project_settings(&self, id: &str) -> Result<ProjectSettings, ApiError> {
        self.get(id).await
    }

    /// Lists project settings.
    pub async fn list_project_settings(
        &self,
        query: &ListQuery,
    ) -> Result<Page<ProjectSettings>, ApiError> {
        self.list(query, None).await
    }

    /// Updates the fields given.
    pub async fn update_project_settings(
        &self,
        req: UpdateProjectSettingsRequest,
    ) -> Result<ProjectSettings, ApiError> {
        self.store
            .write(move |tx| {
                let mut s: ProjectSettings = existing::<ProjectSettings>(tx, &req.id)?;
                rename(&mut s.project_id, "project_id", req.project_id)?;
                set(&mut s.group_access, req.group_access);
                set(&mut s.repositories, req.repositories);
                touch(&mut s.metadata);
                tx.put(&s)?;
                tx.publish(resource_event(
                    EventType::Updated,
                    Resource::ProjectSettings(Box::new(s.clone())),
                ));
                Ok(s)
            })
            .await
    }

    /// Deletes project settings.
    pub async fn delete_project_settings(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let s: ProjectSettings = existing::<ProjectSettings>(tx, &id)?;
                tx.delete::<ProjectSettings>(&id)?;
                tx.publish(resource_event(
                    EventType::Deleted,
                    Resource::ProjectSettings(Box::new(s)),
                ));
                Ok(())
            })
            .await
    }
}
