//! Memory tuning: recycled buffers for the frames decoded from containers
//! ([`frame_pool`]), and handing memory the allocator keeps back to the OS
//! ([`trim`]).

pub mod frame_pool;
pub mod trim;
