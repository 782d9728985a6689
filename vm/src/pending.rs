//! Pending results ([`qmpc_protocols::wires::Pending`]): which instructions may leave their
//! result unreshared, because every reader, through local steps that keep each element
//! where it is, opens it from the evaluators' components alone.
//!
//! A residual block's last requantization is read only by the `Add` that rescales it (a
//! public factor, a sum with the skip connection) and requantizes the sum; a quantized
//! SiLU's lookup reads the requantization before it. The producer then skips its closing
//! resharing (a round, and a word per element from each evaluator), and the reader opens
//! what `A` and `B` hold. Every step between must keep element `e` at index `e`, so that
//! the reader's groups (the same [`qmpc_protocols::wires::Deal`] over the same length) put
//! it with the same dealer: element-wise sums and public factors on operands of the
//! result's own shape, reshapes and casts.

use crate::{Instr, Program, Visibility};
use qmpc_protocols::wires::{Answer, Wires};
use std::collections::BTreeMap;

/// For each instruction, whether it may leave its result pending: its only call may
/// ([`Answer::leaves`]), and every reader of its result accepts pending shares, at the
/// widths `wires` give them.
pub(crate) fn leaving(
    program: &Program,
    answers: &BTreeMap<usize, Answer>,
    wires: &[Wires],
) -> Vec<bool> {
    let regs = &program.registers;
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); regs.len()];
    for (i, ins) in program.code.iter().enumerate() {
        for s in ins.srcs() {
            readers[s as usize].push(i);
        }
    }
    let secret = |r: u32| regs[r as usize].vis == Visibility::Secret;
    // Same elements in the same order: equal shapes (no broadcast), or equal counts for
    // a reshape.
    let same_shape = |a: u32, b: u32| {
        let (a, b) = (&regs[a as usize].ty, &regs[b as usize].ty);
        a.dims == b.dims && a.batched == b.batched
    };
    let same_count = |a: u32, b: u32| {
        let (a, b) = (&regs[a as usize].ty, &regs[b as usize].ty);
        a.dims.iter().product::<usize>() == b.dims.iter().product::<usize>()
            && a.batched == b.batched
    };
    // The instruction's one call answered `f` at the width of its operands.
    let single = |i: usize, f: fn(&Answer) -> [bool; 2]| {
        let narrow = usize::from(wires[i].narrow_in);
        answers
            .get(&i)
            .is_some_and(|a| a.calls == 1 && f(a)[narrow])
    };
    // Whether a register may hold pending shares, decided after all of its readers
    // (they come later in the program).
    let mut accepts = vec![false; regs.len()];
    for ins in program.code.iter().rev() {
        let Some(d) = ins.dst() else { continue };
        let reader_accepts = |j: usize| -> bool {
            match &program.code[j] {
                Instr::Add { dst, .. } | Instr::Sub { dst, .. } => {
                    same_shape(d, dst.0) && accepts[dst.0 as usize]
                }
                Instr::Mul { dst, a, b } => {
                    let other = if a.0 == d { b.0 } else { a.0 };
                    other != d && !secret(other) && same_shape(d, dst.0) && accepts[dst.0 as usize]
                }
                Instr::Reshape { dst, .. } | Instr::Cast { dst, .. } => {
                    same_count(d, dst.0) && accepts[dst.0 as usize]
                }
                Instr::Requant { x, .. } | Instr::Lookup { x, .. } => {
                    x.0 == d && single(j, |a| a.opens)
                }
                _ => false,
            }
        };
        accepts[d as usize] = secret(d)
            && !readers[d as usize].is_empty()
            && readers[d as usize].iter().all(|&j| reader_accepts(j));
    }
    program
        .code
        .iter()
        .enumerate()
        .map(|(i, ins)| ins.dst().is_some_and(|d| accepts[d as usize]) && single(i, |a| a.leaves))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytecode::asm::assemble;
    use qmpc_protocols::wires::Reads;

    /// A residual `Add` (a zero point, a public factor, a sum), a requantization read by
    /// a sum and a max, a lookup, a reshape.
    const PROGRAM: &str = r#"
.program name="pending", trunc=exact
.input 0, name="x", external=f32, type=i8, dims=[1, 4], batched=1, scale=[1.0], zero_point=[0], axis=1
.output 0, name="y", external=f32, scale=[1.0], zero_point=[0], axis=1
.output 1, name="z", external=f32, scale=[1.0], zero_point=[0], axis=1
.output 2, name="w", external=f32, scale=[1.0], zero_point=[0], axis=1
.const 0, type=i32, dims=[1], data=[3]
.const 1, type=i64, dims=[1], data=[8]
.const 2, type=i8, dims=[1], data=[0]
.const 3, type=i8, dims=[256], data=[0]
.reg %0, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %1, type=i32, dims=[1], batched=0, vis=public, lo=3, hi=3
.reg %2, type=i64, dims=[1], batched=0, vis=public, lo=8, hi=8
.reg %3, type=i8, dims=[1], batched=0, vis=public, lo=0, hi=0
.reg %4, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %5, type=i16, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %6, type=i16, dims=[1, 4], batched=1, vis=secret, lo=-384, hi=381
.reg %7, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %8, type=i16, dims=[1, 4], batched=1, vis=secret, lo=-512, hi=508
.reg %9, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %10, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %11, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %12, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %13, type=i8, dims=[1, 4], batched=1, vis=secret, lo=-128, hi=127
.reg %14, type=i8, dims=[1, 2, 2], batched=1, vis=secret, lo=-128, hi=127
.reg %15, type=i8, dims=[1, 2, 2], batched=1, vis=secret, lo=-128, hi=127
%0 = input index=0
%1 = const index=0
%2 = const index=1
%3 = const index=2
%4 = requant x=%0, num=%1, den=%2, zp=%3, lo=-128, hi=127
%5 = sub a=%4, b=%3
%6 = mul a=%5, b=%1
%7 = requant x=%0, num=%1, den=%2, zp=%3, lo=-128, hi=127
%8 = add a=%6, b=%7
%9 = requant x=%8, num=%1, den=%2, zp=%3, lo=-128, hi=127
%10 = requant x=%0, num=%1, den=%2, zp=%3, lo=-128, hi=127
%11 = max a=%7, b=%9
%12 = lookup x=%10, table=3, offset=-128
%13 = requant x=%0, num=%1, den=%2, zp=%3, lo=-128, hi=127
%14 = reshape x=%13
%15 = requant x=%14, num=%1, den=%2, zp=%3, lo=-128, hi=127
output x=%11, index=0
output x=%12, index=1
output x=%15, index=2
"#;

    fn answer(leaves: bool, opens: [bool; 2]) -> Answer {
        Answer {
            reads: Reads::All,
            calls: 1,
            leaves: [leaves; 2],
            opens,
        }
    }

    /// The requantizations leave and open at either width, the lookup opens, the max
    /// neither.
    fn answers() -> BTreeMap<usize, Answer> {
        let mut a: BTreeMap<usize, Answer> = [4, 7, 9, 10, 13, 15]
            .map(|i| (i, answer(true, [true; 2])))
            .into();
        a.insert(11, answer(false, [false; 2]));
        a.insert(12, answer(false, [true; 2]));
        a
    }

    fn marked(program: &Program, answers: &BTreeMap<usize, Answer>, wires: &[Wires]) -> Vec<usize> {
        let flags = leaving(program, answers, wires);
        (0..flags.len()).filter(|&i| flags[i]).collect()
    }

    /// Left pending: the residual `Add`'s operand (through a zero point, a factor and a
    /// sum), the lookup's, the reshaped one; not the one a max reads, nor the sum's
    /// requantization that only the max reads.
    #[test]
    fn results_are_left_pending_where_every_reader_opens_them() {
        let p = assemble(PROGRAM).unwrap();
        let wires = vec![Wires::default(); p.code.len()];
        assert_eq!(marked(&p, &answers(), &wires), [4, 10, 13]);
    }

    /// An opening that reads pending shares only at full width does not take them where
    /// its operand is narrow; an opening of two calls takes none.
    #[test]
    fn readers_must_open_pending_shares_at_their_width_in_one_call() {
        let p = assemble(PROGRAM).unwrap();
        let mut a = answers();
        a.insert(9, answer(true, [true, false]));
        let mut wires = vec![Wires::default(); p.code.len()];
        assert_eq!(marked(&p, &a, &wires), [4, 10, 13]);
        wires[9].narrow_in = true;
        assert_eq!(marked(&p, &a, &wires), [10, 13]);
        a.get_mut(&12).unwrap().calls = 2;
        assert_eq!(marked(&p, &a, &wires), [13]);
    }
}
