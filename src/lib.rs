//! Bento: run untrusted Python functions in sandboxed Docker containers, as
//! sessions that outlive the client's connection.
//!
//! Where things live:
//! - [`protocol`]: wire types of the HTTP API and the attach WebSocket;
//! - [`config`]: server settings and image descriptions (YAML);
//! - [`driver_frame`]: the framing between the controller and the in-container driver;
//! - [`frame_pool`]: recycled buffers for the frames decoded from containers;
//! - [`runtime`]: the container engine behind a small trait (Docker via bollard,
//!   and its own attach on the engine's Unix socket);
//! - [`session`]: one actor task per session, its output log and spool;
//! - [`registry`]: the live sessions by token, creation and reaping;
//! - [`pool`]: warm containers per image, started ahead of sessions;
//! - [`store`]: submitted functions on disk;
//! - [`check`]: the syntax check at submit, in a container of the function's image;
//! - [`trim`]: hands memory the allocator keeps back to the OS;
//! - [`api`]: the axum HTTP and WebSocket routes;
//! - [`server`]: `run(listener, config, shutdown)`, which wires it all up;
//! - [`client`]: the client library the CLI is built on;
//! - [`cli`]: the `bento` command line;
//! - [`images`]: building function images.

pub mod api;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod driver_frame;
pub mod frame_pool;
pub mod images;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod reconcile;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod session;
pub mod store;
pub mod trim;
