//! qmpc's bytecode: the instruction table, the binary container and text assembly, the
//! typing rules and the loader's checks. Everything the compiler needs to emit a program
//! and everything a party needs to load one; no execution.
//!
//! Architecture invariant: this crate links no cryptography and no sockets (the compiler
//! depends on it; `tests/architecture.rs` checks the crate graph).

pub mod asm;
pub mod container;
pub mod operand;
pub mod ops;
pub mod program;
pub mod shapes;
pub mod tensor;
pub mod types;
pub mod verify;

pub use container::{ContainerError, Weights};
pub use ops::{Comm, Instr, OPCODES};
pub use program::*;
pub use types::{DType, TensorType, Visibility};
