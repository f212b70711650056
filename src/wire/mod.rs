//! What crosses a process boundary: the client protocol ([`api`]: the HTTP
//! API's bodies and the attach WebSocket) and the driver protocol
//! ([`driver`]: frames between the controller and the driver inside a
//! function's container), with the duration format both speak.
//!
//! This layer depends on nothing else in the crate, so the client library
//! uses it without server code.

pub mod api;
pub mod driver;
pub mod duration;
