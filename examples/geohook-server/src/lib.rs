//! The geo-hook example server: a Tile38-compatible geofencing server whose
//! append-only file is repaired at start by `wal-repair`, compacted by
//! `aof-compactor`, and whose process is watched by `memwatch`.
//!
//! The binary `geohook-server` is the product; this library holds its parts
//! so that they can be unit-tested. See the README for the command surface.

pub mod aof;
pub mod app;
pub mod commands;
pub mod geo;
pub mod glob;
pub mod info;
pub mod metrics;
pub mod repair;
pub mod resp;
pub mod server;
pub mod settings;
pub mod shrink;
pub mod state;
pub mod watch;
