//! What the parent serves: the gateway's gRPC API and the enclave's HTTPS relay.
//!
//! - [`grpc_bridge`]: the gateway's gRPC API over mutual TLS, translated to `wire`.
//! - [`session_gate`]: admission in front of the enclave's session table.
//! - [`https_relay`]: the enclave's HTTPS/SSE relay, to allowlisted URLs only.
//! - [`counted_conn`]: a connection holding a permit of the listener's limit.
//! - [`accept_backoff`]: the listeners' accept loop, without spinning.

pub mod accept_backoff;
pub mod counted_conn;
pub mod grpc_bridge;
pub mod https_relay;
pub mod session_gate;
