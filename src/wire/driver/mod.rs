//! The driver protocol: frames between the controller and the driver inside
//! a function's container (`docs/driver.md`).

mod codec;

pub use codec::*;
