//! What crosses a process boundary: the client protocol ([`api`]: the HTTP
//! API's bodies and the attach WebSocket) and the driver protocol
//! ([`driver`]: frames between the controller and the driver inside a
//! function's container), with the duration format both speak.
//!
//! This layer depends on no server code (only on the frame buffers of
//! `mem`), so the client library uses it without pulling the server in.

pub mod api;
pub mod driver;
pub mod duration;
pub mod whole;
