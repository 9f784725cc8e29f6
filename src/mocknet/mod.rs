pub mod dns;
pub mod pki;
