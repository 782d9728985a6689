//! qmpc's virtual machine: the bytecode (binary container and text assembly), the loader
//! that verifies it, and the interpreter that runs it in one party against a [`Protocol`].
//!
//! Architecture invariant: the VM knows nothing of ONNX; it sees only bytecode.
//!
//! [`Protocol`]: qmpc_protocols::Protocol

pub mod bytecode;
mod concurrent;
pub mod cost;
pub mod interp;
pub mod shapes;
pub mod tensor;
pub mod types;
pub mod verify;

pub use bytecode::{Instr, Program, Weights};
pub use types::{DType, TensorType, Visibility};
