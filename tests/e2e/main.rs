//! The single integration-test binary (one link, many modules).

mod architecture;
mod asn;
mod blockpages;
mod classify;
mod classify_conn;
mod cli;
mod conn;
mod controls;
mod dns;
mod dns_hostile;
mod docs;
mod echo;
mod hardening;
mod media;
mod mocknet;
mod quic;
mod regime;
mod report;
mod store;
mod suites;
mod support;
mod targets;
mod unbound;
mod ux;
mod vpn;
