//! Wire types shared by the controller and the client: the JSON bodies of
//! the HTTP API (`http`), the frames and control messages of the attach
//! WebSocket (`socket`), and the resource limits both speak (`limits`).
//!
//! Nothing here depends on the controller: the client library and the CLI
//! use these types without pulling in server code.

mod http;
mod limits;
mod socket;
mod tenants;
mod usage;

pub use http::*;
pub use limits::*;
pub use socket::*;
pub use tenants::*;
pub use usage::*;

#[cfg(test)]
mod tests;
