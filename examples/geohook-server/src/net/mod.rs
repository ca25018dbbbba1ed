//! The TCP front end: the listener (admission: protected mode, the client
//! cap, the per-address cap, each connection's permit) and the connection
//! loop (read, parse, execute, flush the log, reply).

pub(crate) mod conn;
pub(crate) mod listener;
pub(crate) mod monitor;
pub(crate) mod pubsub;
