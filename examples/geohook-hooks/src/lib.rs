//! Geofence hooks of the geohook example server.
