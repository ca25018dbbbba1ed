//! The geo-hook example server.
