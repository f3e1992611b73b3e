//! The watch hub: every committed change is published here, in commit order.
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
    resources: broadcast::Sender<ResourceEvent>,
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
            resources: broadcast::channel(capacity).0,
            messages: broadcast::channel(capacity).0,
        }
    }

    /// Receives every resource change published from now on.
    pub fn subscribe_resources(&self) -> broadcast::Receiver<ResourceEvent> {
        self.resources.subscribe()
    }

    /// Receives every session message published from now on.
    pub fn subscribe_messages(&self) -> broadcast::Receiver<SessionMessage> {
        self.messages.subscribe()
    }

    /// Publishes an event (no receivers is fine).
    pub fn publish(&self, event: Event) {
        match event {
            Event::Resource(e) => {
                let _ = self.resources.send(e);
            }
            Event::Message(m) => {
                let _ = self.messages.send(m);
            }
        }
    }
}
