//! qmpc as a library: what the command line and the Python bindings both call.
//!
//! - [`Model`]: compile an ONNX model (or load a `.qmpc` program and the model owner's
//!   `.qmpw` weights).
//! - [`Session`]: a protocol, its parties and their roles; [`Session::cost`] gives every
//!   party's rounds and bytes before anything runs, [`Session::run`] runs every party
//!   (and the dealer) on threads of this process.
//! - [`Member`]: one party or the dealer of a session across hosts, linked by mutual TLS.
//! - [`train`]: training sessions (`qmpc train`, `qmpc party --train`).
//!
//! Errors are one [`Error`] per kind, each one line.

pub mod cost;
mod error;
pub mod io;
pub mod keygen;
mod local;
mod member;
pub mod memory;
mod model;
pub mod npy;
pub mod party;
pub mod train;
pub mod train_party;

pub use error::{Error, Result};
pub use io::Input;
pub use local::{Cost, Outcome, Session};
pub use member::{Member, MemberOutcome};
pub use model::{load_program, load_weights, weights_path, Model};
pub use npy::Array;
pub use qmpc_compiler::Options as CompileOptions;
pub use qmpc_vm::interp::Roles;
