//! Commands, in the manner of mini-redis: one file per command family, each
//! with a typed parse, an apply, and the exact form it logs.
//!
//! Layers, bottom up (a file imports only from layers below it):
//! 1. [`spec`]: the command table;
//! 2. [`ctx`] (session, context, typed errors), [`args`] (argument cursor,
//!    value and area parsers), [`render`] (reply shapes);
//! 3. the families: [`set`], [`del`], [`expire`], [`fields`], [`get`],
//!    [`keys`], [`search`], [`hooks`], [`chan`], [`conn`], [`config`],
//!    [`server`];
//! 4. [`write`]: applies any write, for clients and for replay alike;
//! 5. [`repl`] (FOLLOW, ROLE, HEALTHZ), which sits above the replication
//!    tasks it drives;
//! 6. [`dispatch`]: from a client's arguments to the reply.

pub(crate) mod args;
pub(crate) mod chan;
pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod ctx;
pub(crate) mod del;
pub(crate) mod dispatch;
pub(crate) mod dlq;
pub(crate) mod expire;
pub(crate) mod fields;
pub(crate) mod get;
pub(crate) mod hookconf;
pub(crate) mod hooks;
pub(crate) mod keys;
pub(crate) mod render;
pub(crate) mod repl;
pub(crate) mod search;
pub(crate) mod server;
pub(crate) mod set;
pub(crate) mod spec;
pub(crate) mod write;
