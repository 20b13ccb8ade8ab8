//! Test support for launcher: in-process emulators of the services adapters speak to.
//!
//! Emulators are test code only: each binds `127.0.0.1:0` on a background thread, records the
//! requests it receives, scripts faults, and stops when dropped.

pub mod cli;
pub mod emulators;
pub mod engines;
pub mod http;
pub mod media;
pub mod text;
