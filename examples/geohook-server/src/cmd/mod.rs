//! Commands, in the manner of mini-redis: one file per command family, each
//! with a typed parse, an apply, and the exact form it logs.
//!
//! Layers, bottom up (a file imports only from layers below it):
//! 1. [`keyword`]: arguments lowered for matching keywords; above it
//!    [`spec`]: the command table, whose lookup lowers names that way;
//! 2. [`ctx`] (session, context, typed errors), [`shapes`] (areas built
//!    from numbers: sector, tile, quadkey, buffer), [`args`] (argument
//!    cursor, value and area parsers), [`expr`] (search filters beyond
//!    ranges), [`render`] (reply shapes);
//! 3. the families: [`set`], [`del`], [`expire`], [`fields`], [`get`],
//!    [`json`] and [`rename`] (above [`set`], whose SET they run),
//!    [`keys`], [`search`] (with the [`sliced`] and [`sparse`] walks),
//!    [`test`], [`hooks`], [`chan`], [`conn`], [`client`], [`config`],
//!    [`server`], and [`lua`] (the Lua sandbox and value conversions);
//! 4. [`write`]: applies any write, for clients and for replay alike;
//!    [`read`]: any read on a lock already held, for clients and scripts;
//! 5. [`repl`] (FOLLOW, ROLE, REPLCONF, HEALTHZ), which sits above the replication
//!    tasks it drives; [`script`] (EVAL*, SCRIPT), which runs a script's
//!    calls through `write` and `read`;
//! 6. [`dispatch`]: from a client's arguments to the reply.

pub(crate) mod args;
pub(crate) mod chan;
pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod ctx;
pub(crate) mod del;
pub(crate) mod dispatch;
pub(crate) mod dlq;
pub(crate) mod expire;
pub(crate) mod expr;
pub(crate) mod fields;
#[cfg(test)]
mod fuzz_tests;
pub(crate) mod get;
pub(crate) mod hookconf;
pub(crate) mod hooks;
pub(crate) mod json;
pub(crate) mod keys;
pub(crate) mod keyword;
pub(crate) mod lua;
pub(crate) mod read;
pub(crate) mod rename;
pub(crate) mod render;
pub(crate) mod repl;
pub(crate) mod script;
pub(crate) mod search;
pub(crate) mod server;
pub(crate) mod set;
pub(crate) mod shapes;
pub(crate) mod sliced;
pub(crate) mod sparse;
pub(crate) mod spec;
pub(crate) mod test;
pub(crate) mod write;
