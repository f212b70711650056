//! Bento: run untrusted Python functions in sandboxed Docker containers, as
//! sessions that outlive the client's connection.
//!
//! Where things live, by layer (each uses only the layers above it):
//! - `metrics`: the controller's Prometheus counters;
//! - `mem`: recycled frame buffers and handing memory back to the OS;
//! - [`wire`]: what crosses a process boundary: the client protocol (HTTP
//!   bodies, the attach WebSocket) and the driver protocol (frames to and
//!   from the driver in a function's container);
//! - [`config`]: server settings and image descriptions (YAML);
//! - [`runtime`]: the container engine behind a small trait (Docker via
//!   bollard, with its own attach on the engine's Unix socket), and building
//!   function images;
//! - [`session`]: one actor task per session, its output log and spool, the
//!   tasks serving its container's stdio, and its durable record (SQLite);
//! - [`controller`]: `run(listener, config, shutdown)`: the HTTP API, the
//!   live session table, creating sessions, recovery after a restart, the
//!   warm pool, the function store and the syntax check;
//! - [`client`]: the client library the CLI is built on;
//! - [`cli`]: the `bento` command line.

pub mod cli;
pub mod client;
pub mod config;
pub mod controller;
pub(crate) mod mem;
pub(crate) mod metrics;
pub mod runtime;
pub mod session;
pub mod wire;
