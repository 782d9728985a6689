//! qmpc as a library: the orchestration behind the command line and the Python bindings —
//! who plays which role, the links between the parties, the dealer, the ring, and the
//! quantization of inputs and outputs at their owners.

pub mod cost;
pub mod keygen;
pub mod npy;
pub mod party;
pub mod run;
pub mod train;
pub mod train_party;

use std::path::{Path, PathBuf};

/// `MODEL.qmpw` beside `MODEL.qmpc`.
pub fn weights_path(program: &Path) -> PathBuf {
    program.with_extension("qmpw")
}
