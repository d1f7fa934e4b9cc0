//! End-to-end tests: a real `flotilla agent` process on a temporary data dir, driven by the real
//! `flotilla` CLI and by plain HTTPS requests, as a user would.

mod api;
mod cli;
mod cluster;
mod harness;
mod images;
mod kubectl;
mod library;
mod pods;
mod restart;
mod services;
mod workloads;
