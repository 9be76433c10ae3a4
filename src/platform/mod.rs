//! The bottom layer: what this CPU can do ([`cpu`]) and the thread pool a plan runs on
//! ([`threads`]). It imports nothing of ours but [`crate::error`].

pub mod cpu;
pub mod threads;
