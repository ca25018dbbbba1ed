//! Geofence hooks in the server, on top of `geohook-hooks`: the engine the
//! write path feeds ([`engine`]) and the hooks' Prometheus metrics
//! ([`metrics`]). The commands (SETHOOK, DELHOOK, PDELHOOK, HOOKS) are in
//! `cmd/hooks.rs`; the delivery and expiry tasks in `tasks.rs`.

pub(crate) mod engine;
pub(crate) mod metrics;
