//! Parsed statements, before they are given meaning.

use crate::operand::AsmValue;

/// One line: `[%dst =] word args`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// Byte offset of the statement, for error lines.
    pub at: usize,
    pub dst: Option<u32>,
    pub word: String,
    pub args: Vec<Arg>,
}

/// `value` or `key=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub key: Option<String>,
    pub value: AsmValue,
}
