//! Geospatial data model of the geohook example server.
