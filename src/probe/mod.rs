//! Probe steps. Each returns its observation; a failure is a value in it, never an `Err`.

pub mod dns;
pub mod failure;
pub mod http;
pub mod path;
pub mod socks;
pub mod stun;
pub mod tcp;
pub mod tls;
