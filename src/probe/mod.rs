//! Probe steps. Each returns its observation; a failure is a value in it, never an `Err`.
//! Steps to come (tcp, tls, http, transfer, control path) join `dns` here.

pub mod dns;
pub mod failure;
