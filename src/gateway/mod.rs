//! The Aether control-plane gateway: a gRPC binding (`aether.v1.AetherGateway/Connect`, one
//! bidirectional stream per client) in front of the core's service layer.
//!
//! * [`proto`] — the generated wire types and server trait.

pub mod proto;
