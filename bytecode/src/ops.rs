//! The instruction set: one table, [`for_each_op!`], from which the instruction enum, the
//! binary encoder and decoder, the assembly printer and parser and the communication class
//! (read by the VM and, later, the cost model) are all generated.
//!
//! Every instruction works on whole tensors. Operands named `dst` are written; `Reg` and
//! `Regs` operands are read; `Index` operands point into the program's tables (constants,
//! inputs, weights, outputs).

use super::operand::{AsmValue, DecodeError, Dst, Index, Int, Ints, Operand, Reg, Regs};

/// Whether an instruction communicates, given the visibility of its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comm {
    /// Never communicates.
    Local,
    /// Communicates exactly when at least one `Reg`/`Regs` operand is secret
    /// (`mul`, `matmul`, `conv`: a public factor keeps them local).
    IfBothSecret,
    /// Communicates when its (single) secret operand is secret.
    IfSecret,
    /// Always communicates (sharing an input, revealing an output).
    Always,
}

impl Comm {
    /// Whether an instruction of this class communicates, given whether each of its
    /// register operands is secret.
    pub fn communicates(self, secret: &[bool]) -> bool {
        match self {
            Comm::Local => false,
            Comm::Always => true,
            Comm::IfSecret => secret.iter().any(|&s| s),
            Comm::IfBothSecret => !secret.is_empty() && secret.iter().all(|&s| s),
        }
    }
}

/// The instruction table. Each line: doc, variant, opcode, mnemonic, communication class,
/// operands.
#[macro_export]
macro_rules! for_each_op {
    ($m:ident) => {
        $m! {
            /// Secret-share input `index` of the program, held by the data owner.
            Input = 0x01, "input", Always { dst: Dst, index: Index };
            /// Secret-share weight `index`, held by the model owner (from its `.qmpw` file).
            Weight = 0x02, "weight", Always { dst: Dst, index: Index };
            /// Load public constant `index`.
            Const = 0x03, "const", Local { dst: Dst, index: Index };
            /// Load secret state `index`: a tensor that lives across runs of the programs of one session (training's weights, optimizer state and current batch).
            Load = 0x04, "load", Local { dst: Dst, index: Index };
            /// Element-wise `a + b` with numpy broadcasting.
            Add = 0x10, "add", Local { dst: Dst, a: Reg, b: Reg };
            /// Element-wise `a - b` with numpy broadcasting.
            Sub = 0x11, "sub", Local { dst: Dst, a: Reg, b: Reg };
            /// Element-wise `a · b` with numpy broadcasting.
            Mul = 0x12, "mul", IfBothSecret { dst: Dst, a: Reg, b: Reg };
            /// Matrix product `[..., m, k] x [..., k, n]`, batch axes broadcast.
            MatMul = 0x13, "matmul", IfBothSecret { dst: Dst, a: Reg, b: Reg };
            /// 2-D convolution `[N, C, H, W] * [M, C/group, kh, kw]`, no bias; pads are top, left, bottom, right.
            Conv = 0x14, "conv", IfBothSecret { dst: Dst, x: Reg, w: Reg, strides: Ints, pads: Ints, dilations: Ints, group: Int };
            /// Gradient of `conv` with respect to its weight, `Σ_n gy[n] ⋆ x[n]`, in the shape `[M, C/group, kh, kw]` of `dst`; both operands of a fixed batch.
            ConvGradW = 0x16, "convgradw", IfBothSecret { dst: Dst, x: Reg, gy: Reg, strides: Ints, pads: Ints, dilations: Ints, group: Int };
            /// Gradient of `conv` with respect to its input (a transposed convolution) in the shape `[N, C, H, W]` of `dst`.
            ConvGradX = 0x17, "convgradx", IfBothSecret { dst: Dst, gy: Reg, w: Reg, strides: Ints, pads: Ints, dilations: Ints, group: Int };
            /// Sum over each window (zero padding); averaging is a following `rescale`.
            SumPool = 0x15, "sumpool", Local { dst: Dst, x: Reg, kernel: Ints, strides: Ints, pads: Ints, dilations: Ints };
            /// `round_half_even(x · num / den)` element-wise; `num` and `den` are public and broadcast.
            Rescale = 0x20, "rescale", IfSecret { dst: Dst, x: Reg, num: Reg, den: Reg };
            /// `min(max(x, lo), hi)` element-wise.
            Clamp = 0x21, "clamp", IfSecret { dst: Dst, x: Reg, lo: Int, hi: Int };
            /// Element-wise maximum of `a` and `b` (same shape).
            Max = 0x22, "max", IfSecret { dst: Dst, a: Reg, b: Reg };
            /// Maximum over each window; padding never wins.
            MaxPool = 0x23, "maxpool", IfSecret { dst: Dst, x: Reg, kernel: Ints, strides: Ints, pads: Ints, dilations: Ints };
            /// Index of the maximum along `axis` (first on ties, last with `select_last = 1`).
            ArgMax = 0x24, "argmax", IfSecret { dst: Dst, x: Reg, axis: Int, select_last: Int };
            /// `table[x - offset]` element-wise, `table` a public constant.
            Lookup = 0x25, "lookup", IfSecret { dst: Dst, x: Reg, table: Index, offset: Int };
            /// `clamp(round_half_even(x · num / den) + zp, lo, hi)`: a rescale, zero point and clamp fused (`num`, `den`, `zp` public, broadcast).
            Requant = 0x26, "requant", IfSecret { dst: Dst, x: Reg, num: Reg, den: Reg, zp: Reg, lo: Int, hi: Int };
            /// `requant(conv(x, w) + bias)` as one instruction (`bias`, `num`, `den`, `zp` broadcast to the convolution's shape): a product that only its requantization reads, which a protocol may requantize from the product's unreshared parts.
            ConvRequant = 0x27, "convrequant", IfSecret { dst: Dst, x: Reg, w: Reg, bias: Reg, num: Reg, den: Reg, zp: Reg, strides: Ints, pads: Ints, dilations: Ints, group: Int, lo: Int, hi: Int };
            /// `requant(matmul(a, b) + bias)` as one instruction, as `convrequant`.
            MatMulRequant = 0x28, "matmulrequant", IfSecret { dst: Dst, a: Reg, b: Reg, bias: Reg, num: Reg, den: Reg, zp: Reg, lo: Int, hi: Int };
            /// Same elements in the shape of `dst`.
            Reshape = 0x30, "reshape", Local { dst: Dst, x: Reg };
            /// Permute axes: output axis `i` is input axis `perm[i]`.
            Transpose = 0x31, "transpose", Local { dst: Dst, x: Reg, perm: Ints };
            /// Pad with the constant `value`; `pads` = begins of every axis then ends.
            Pad = 0x32, "pad", Local { dst: Dst, x: Reg, pads: Ints, value: Int };
            /// Concatenate along `axis`.
            Concat = 0x33, "concat", Local { dst: Dst, xs: Regs, axis: Int };
            /// The windows of `x` `[N, C, H, W]` (fixed batch) as `[kh·kw, N, C, OH, OW]`; padding reads zero.
            Window = 0x35, "window", Local { dst: Dst, x: Reg, kernel: Ints, strides: Ints, pads: Ints, dilations: Ints };
            /// The adjoint of `window`: `[kh·kw, N, C, OH, OW]` summed back onto the positions they were read from, in the shape `[N, C, H, W]` of `dst`.
            Unwindow = 0x36, "unwindow", Local { dst: Dst, x: Reg, kernel: Ints, strides: Ints, pads: Ints, dilations: Ints };
            /// Element `i` of `dst` along each axis is element `starts + i·steps` of `x` (steps ≥ 1); the shape of `dst` says how many.
            Slice = 0x37, "slice", Local { dst: Dst, x: Reg, starts: Ints, steps: Ints };
            /// Change the element type; the verifier checks the value range fits.
            Cast = 0x34, "cast", Local { dst: Dst, x: Reg };
            /// Reveal `x` to the party entitled to output `index`.
            Output = 0x40, "output", Always { x: Reg, index: Index };
            /// Make `x` the value state `index` has after this run (at most once per state).
            Store = 0x41, "store", Local { x: Reg, index: Index };
        }
    };
}

macro_rules! define_instructions {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $mn:literal, $comm:ident { $($field:ident : $ty:ident),* } ;)*) => {
        /// One bytecode instruction.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Instr {
            $( $(#[doc = $doc])* $name { $($field: $ty),* }, )*
        }

        /// Every mnemonic with its opcode, communication class and doc line, in table order.
        pub const OPCODES: &[(&str, u8, Comm, &str)] = &[
            $( ($mn, $code, Comm::$comm, concat!($($doc),*)), )*
        ];

        impl Instr {
            pub fn mnemonic(&self) -> &'static str {
                match self { $( Instr::$name { .. } => $mn, )* }
            }

            pub fn opcode(&self) -> u8 {
                match self { $( Instr::$name { .. } => $code, )* }
            }

            pub fn comm(&self) -> Comm {
                match self { $( Instr::$name { .. } => Comm::$comm, )* }
            }

            /// Append the binary encoding: opcode byte, then each operand.
            pub fn encode(&self, buf: &mut Vec<u8>) {
                match self {
                    $( Instr::$name { $($field),* } => {
                        buf.push($code);
                        $( $field.encode(buf); )*
                    } )*
                }
            }

            /// Decode one instruction from the front of `buf`.
            pub fn decode(buf: &mut &[u8]) -> Result<Instr, DecodeError> {
                let (&op, rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
                *buf = rest;
                match op {
                    $( $code => Ok(Instr::$name { $($field: <$ty as Operand>::decode(buf)?),* }), )*
                    other => Err(DecodeError::UnknownOpcode(other)),
                }
            }

            /// The register written, if any.
            pub fn dst(&self) -> Option<u32> {
                match self {
                    $( Instr::$name { $($field),* } => {
                        let mut d = None;
                        $( if let Some(r) = $field.as_dst() { d = Some(r); } )*
                        d
                    } )*
                }
            }

            /// Registers read, in operand order.
            pub fn srcs(&self) -> Vec<u32> {
                match self {
                    $( Instr::$name { $($field),* } => {
                        let mut v = Vec::new();
                        $( $field.push_srcs(&mut v); )*
                        v
                    } )*
                }
            }

            /// Named operands as assembly values, in table order.
            pub fn operands(&self) -> Vec<(&'static str, AsmValue)> {
                match self {
                    $( Instr::$name { $($field),* } => vec![ $( (stringify!($field), $field.to_asm()) ),* ], )*
                }
            }

            /// Build an instruction from its mnemonic and named operands (the assembler).
            pub fn from_asm(mnemonic: &str, mut args: Vec<(String, AsmValue)>) -> Result<Instr, String> {
                match mnemonic {
                    $( $mn => {
                        let inst = Instr::$name { $($field: {
                            let pos = args.iter().position(|(k, _)| k == stringify!($field))
                                .ok_or_else(|| format!("`{}` needs operand `{}`", $mn, stringify!($field)))?;
                            let (_, v) = args.remove(pos);
                            <$ty as Operand>::from_asm(&v).ok_or_else(|| format!(
                                "`{}` operand `{}`: expected {}, found {}", $mn, stringify!($field), <$ty as Operand>::KIND, v))?
                        }),* };
                        if let Some((k, _)) = args.first() {
                            return Err(format!("`{}` has no operand `{}`", $mn, k));
                        }
                        Ok(inst)
                    } )*
                    other => Err(format!("unknown instruction `{other}`")),
                }
            }
        }
    };
}

for_each_op!(define_instructions);

/// The parameters every requantization (`requant`, `convrequant`, `matmulrequant`) takes:
/// the registers of `num`, `den` and `zp`, and the clamp's `lo` and `hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requantization {
    pub num: u32,
    pub den: u32,
    pub zp: u32,
    pub lo: i64,
    pub hi: i64,
}

impl Instr {
    /// The requantization's parameters, for the three instructions that requantize.
    pub fn requantization(&self) -> Option<Requantization> {
        match self {
            Instr::Requant {
                num,
                den,
                zp,
                lo,
                hi,
                ..
            }
            | Instr::ConvRequant {
                num,
                den,
                zp,
                lo,
                hi,
                ..
            }
            | Instr::MatMulRequant {
                num,
                den,
                zp,
                lo,
                hi,
                ..
            } => Some(Requantization {
                num: num.0,
                den: den.0,
                zp: zp.0,
                lo: lo.0,
                hi: hi.0,
            }),
            _ => None,
        }
    }

    /// Assembly text of the instruction, e.g. `%3 = add a=%1, b=%2`.
    pub fn to_asm(&self) -> String {
        let mut s = String::new();
        if let Some(d) = self.dst() {
            s.push_str(&format!("%{d} = "));
        }
        s.push_str(self.mnemonic());
        let ops: Vec<String> = self
            .operands()
            .into_iter()
            .filter(|(_, v)| !matches!(v, AsmValue::Dst(_)))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !ops.is_empty() {
            s.push(' ');
            s.push_str(&ops.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (mn, code, _, doc) in OPCODES {
            assert!(seen.insert(*code), "opcode {code:#x} of {mn} repeated");
            assert!(!doc.is_empty(), "{mn} has no doc line");
        }
    }

    #[test]
    fn encode_decode_roundtrip() {
        let instrs = vec![
            Instr::Conv {
                dst: Dst(3),
                x: Reg(1),
                w: Reg(2),
                strides: Ints(vec![1, 2]),
                pads: Ints(vec![0, 1, 0, 1]),
                dilations: Ints(vec![1, 1]),
                group: Int(-7),
            },
            Instr::Concat {
                dst: Dst(9),
                xs: Regs(vec![1, 2, 3]),
                axis: Int(1),
            },
            Instr::Output {
                x: Reg(4),
                index: Index(0),
            },
        ];
        for i in instrs {
            let mut buf = Vec::new();
            i.encode(&mut buf);
            let mut s = &buf[..];
            assert_eq!(Instr::decode(&mut s).unwrap(), i);
            assert!(s.is_empty());
            let args: Vec<(String, AsmValue)> = i
                .operands()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(Instr::from_asm(i.mnemonic(), args).unwrap(), i);
        }
    }
}
