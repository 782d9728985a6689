//! The bytecode: instruction table, binary container and text assembly.

pub mod asm;
pub mod container;
pub mod operand;
pub mod ops;
pub mod program;

pub use container::{ContainerError, Weights};
pub use ops::{Comm, Instr, OPCODES};
pub use program::*;
