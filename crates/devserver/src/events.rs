//! The watch hub: every committed change is published here, in commit order.
//!
//! One channel per watched kind (and one for session messages): a watcher
//! is woken, and handed a copy, only for the kind it watches, not for every
//! change of every kind.
//!
//! Bounded `tokio::sync::broadcast` channels: a slow watcher never blocks a
//! writer; one that falls more than [`CAPACITY`] events behind is told so
//! (`Lagged`) and its watch is closed with an error instead of silently
//! skipping events. Only the store's thread publishes, after each commit and
//! before the next, so the order on the hub is the commit order.

use ambient_protocol::v1::{
    EventType, InboxMessage, Project, ProjectSettings, Session, SessionMessage,
};
use tokio::sync::broadcast;

/// Events buffered per channel before a watcher counts as lagging.
pub const CAPACITY: usize = 4096;

/// A watched resource, as it is after the change (before it, for deletions).
#[derive(Debug, Clone)]
pub enum Resource {
    /// A session.
    Session(Box<Session>),
    /// A project.
    Project(Box<Project>),
    /// Project settings.
    ProjectSettings(Box<ProjectSettings>),
    /// A message left in an agent's inbox.
    Inbox(Box<InboxMessage>),
}

/// The kinds of watched resources: one hub channel each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sessions.
    Session,
    /// Projects.
    Project,
    /// Project settings.
    ProjectSettings,
    /// Agents' inbox messages.
    Inbox,
}

impl Resource {
    /// The kind of this resource.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Session(_) => Kind::Session,
            Resource::Project(_) => Kind::Project,
            Resource::ProjectSettings(_) => Kind::ProjectSettings,
            Resource::Inbox(_) => Kind::Inbox,
        }
    }
}

/// A created/updated/deleted resource.
#[derive(Debug, Clone)]
pub struct ResourceEvent {
    /// What happened.
    pub event_type: EventType,
    /// The resource.
    pub resource: Resource,
}

/// Anything the store publishes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A watched resource changed.
    Resource(ResourceEvent),
    /// A session message was appended.
    Message(SessionMessage),
}

/// The broadcast channels of resource changes and session messages.
#[derive(Debug, Clone)]
pub struct Hub {
    sessions: broadcast::Sender<ResourceEvent>,
    projects: broadcast::Sender<ResourceEvent>,
    settings: broadcast::Sender<ResourceEvent>,
    inbox: broadcast::Sender<ResourceEvent>,
    messages: broadcast::Sender<SessionMessage>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with [`CAPACITY`] events of buffer per channel.
    pub fn new() -> Self {
        Self::with_capacity(CAPACITY)
    }

    /// A hub with the given buffer per channel.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            sessions: broadcast::channel(capacity).0,
            projects: broadcast::channel(capacity).0,
            settings: broadcast::channel(capacity).0,
            inbox: broadcast::channel(capacity).0,
            messages: broadcast::channel(capacity).0,
        }
    }

    fn channel(&self, kind: Kind) -> &broadcast::Sender<ResourceEvent> {
        match kind {
            Kind::Session => &self.sessions,
            Kind::Project => &self.projects,
            Kind::ProjectSettings => &self.settings,
            Kind::Inbox => &self.inbox,
        }
    }

    /// Receives every change of a `kind` of resource published from now on.
    pub fn subscribe_resources(&self, kind: Kind) -> broadcast::Receiver<ResourceEvent> {
        self.channel(kind).subscribe()
    }

    /// Receives every session message published from now on.
    pub fn subscribe_messages(&self) -> broadcast::Receiver<SessionMessage> {
        self.messages.subscribe()
    }

    /// Publishes an event (no receivers is fine).
    pub fn publish(&self, event: Event) {
        match event {
            Event::Resource(e) => {
                let _ = self.channel(e.resource.kind()).send(e);
            }
            Event::Message(m) => {
                let _ = self.messages.send(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(resource: Resource) -> Event {
        Event::Resource(ResourceEvent {
            event_type: EventType::Updated,
            resource,
        })
    }

    #[test]
    fn a_watcher_gets_only_its_kind_and_never_lags_on_another() {
        let hub = Hub::with_capacity(2);
        let mut projects = hub.subscribe_resources(Kind::Project);
        let mut sessions = hub.subscribe_resources(Kind::Session);
        for _ in 0..5 {
            hub.publish(changed(Resource::Session(Box::default())));
        }
        hub.publish(changed(Resource::Project(Box::default())));
        let got = projects.try_recv().map(|e| e.resource.kind());
        assert!(matches!(got, Ok(Kind::Project)), "{got:?}");
        assert!(projects.try_recv().is_err());
        // Five sessions into a buffer of two: the session watcher lagged.
        assert!(matches!(
            sessions.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
    }
}
