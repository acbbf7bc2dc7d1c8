//! The Aether gateway's core side: principals and their identity strings ([`identity`], pure),
//! the presence actor that owns identity locks and supervises one connection actor per stream
//! ([`presence`]), and the connection actor that owns a session and answers its requests
//! ([`connection`]), the durable per-identity message queue it replays from ([`queue`]), and the
//! admin operations a session may ask for ([`admin`]: sessions, tokens). The gRPC binding (frames, tonic) lives in the `aethrolink` crate
//! (`src/gateway/`) and reaches this through `service::aether`.

pub mod acl;
pub mod admin;
pub mod board;
pub mod connection;
pub mod identity;
pub mod kv;
pub mod launch;
pub mod presence;
pub mod queue;
pub mod tasks;
pub mod topics;
