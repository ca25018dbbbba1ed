//! Geofence hooks of the geohook example server.

mod deliver;
mod endpoint;
mod error;
mod fence;
mod hooks;
mod metrics;
mod queue;

pub use deliver::{scheme_supported, Deliverer, DeliveryConfig, Payload};
pub use endpoint::{Endpoint, Scheme, Target};
pub use error::{Error, Result};
pub use fence::{CommandKind, Detect, FenceKind, Filter, HookDef};
pub use hooks::{Change, HookInfo, Hooks, SetOutcome};
pub use metrics::{Metrics, SchemeMetrics};
pub use queue::{Outbox, Pushed, QueueConfig};
