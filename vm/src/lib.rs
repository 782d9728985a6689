//! qmpc's virtual machine: the interpreter that runs a verified program in one party against
//! a [`Protocol`], the runner of programs whose instructions share rounds, and the static
//! cost walk. The bytecode itself (container, assembly, verifier) is `qmpc-bytecode`,
//! re-exported here.
//!
//! Architecture invariant: the VM knows nothing of ONNX; it sees only bytecode.
//!
//! [`Protocol`]: qmpc_protocols::Protocol

mod concurrent;
pub mod cost;
mod fused;
mod grad;
pub mod interp;
mod pending;
mod plain;
pub mod wires;

pub use qmpc_bytecode as bytecode;
pub use qmpc_bytecode::{shapes, tensor, types, verify};
pub use qmpc_bytecode::{DType, Instr, Program, TensorType, Visibility, Weights};
