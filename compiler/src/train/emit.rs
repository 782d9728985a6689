//! Building fixed-point IR: constants, arithmetic with the destination's scale from the
//! verifier's scale rules, and truncations that are fused requantizations (round half to
//! even by a power of two, then a clip that keeps the bounds the headroom plan promises).

use crate::ir::Graph;
use petgraph::stable_graph::NodeIndex;
use qmpc_bytecode::operand::{Dst, Index, Int, Ints, Reg, Regs};
use qmpc_bytecode::{ConstTensor, DType, Instr};

pub(crate) type R<T> = Result<T, String>;

/// A convolution's geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeo {
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
}

impl ConvGeo {
    fn operands(&self) -> (Ints, Ints, Ints, Int) {
        (
            ints(&self.strides),
            ints(&self.pads),
            ints(&self.dilations),
            Int(self.group as i64),
        )
    }
}

/// An IR builder for one training program; new nodes take `origin` as their ONNX node.
pub(crate) struct Emit<'g> {
    pub g: &'g mut Graph,
    pub origin: String,
}

/// An `Ints` operand from sizes.
fn ints(v: &[usize]) -> Ints {
    Ints(v.iter().map(|&x| x as i64).collect())
}

/// The geometry operands of a window without padding or dilation.
fn plain_window(kernel: [usize; 2], strides: [usize; 2]) -> (Ints, Ints, Ints, Ints) {
    (
        ints(&kernel),
        ints(&strides),
        Ints(vec![0; 4]),
        Ints(vec![1, 1]),
    )
}

/// The type of `frac` fractional bits (an integer type for 0).
fn of_frac(frac: u32) -> Option<DType> {
    (frac > 0).then_some(DType::Fx(frac as u8))
}

impl Emit<'_> {
    pub fn dims(&self, n: NodeIndex) -> Vec<usize> {
        self.g.dims(n).to_vec()
    }

    pub fn frac(&self, n: NodeIndex) -> u32 {
        self.g.decl(n).ty.dtype.frac() as u32
    }

    fn node(
        &mut self,
        instr: Instr,
        ops: &[NodeIndex],
        dims: Option<&[usize]>,
        dtype: Option<DType>,
    ) -> R<NodeIndex> {
        let o = self.origin.clone();
        let what = instr.mnemonic();
        let bounds: Vec<String> = ops
            .iter()
            .map(|&n| format!("[{}, {}]", self.g.decl(n).lo, self.g.decl(n).hi))
            .collect();
        self.g
            .add_compute(instr, ops, dims, dtype, &o)
            .map_err(|e| {
                format!(
                    "node `{o}`: `{what}` of operands in {}: {e}",
                    bounds.join(", ")
                )
            })
    }

    /// An instruction whose result scale follows from its operands' (sums keep it,
    /// products add).
    fn scaled(&mut self, instr: Instr, ops: &[NodeIndex], dims: Option<&[usize]>) -> R<NodeIndex> {
        let fracs: Vec<u32> = ops.iter().map(|&o| self.frac(o)).collect();
        let frac = match instr {
            Instr::Mul { .. }
            | Instr::MatMul { .. }
            | Instr::Conv { .. }
            | Instr::ConvGradW { .. }
            | Instr::ConvGradX { .. } => fracs.iter().sum(),
            _ => fracs.first().copied().unwrap_or(0),
        };
        self.node(instr, ops, dims, of_frac(frac))
    }

    /// A public constant of `frac` fractional bits.
    pub fn konst(&mut self, frac: u32, dims: &[usize], data: Vec<i64>) -> NodeIndex {
        let lo = data.iter().copied().min().unwrap_or(0);
        let hi = data.iter().copied().max().unwrap_or(0);
        let dtype = of_frac(frac).unwrap_or(DType::fitting(lo, hi));
        let o = self.origin.clone();
        self.g.add_const(
            ConstTensor {
                dtype,
                dims: dims.to_vec(),
                data,
            },
            &o,
        )
    }

    /// The integer `v` as a one-element constant.
    pub fn int(&mut self, v: i64) -> NodeIndex {
        self.konst(0, &[1], vec![v])
    }

    pub fn add(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        self.scaled(
            Instr::Add {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[a, b],
            None,
        )
    }

    pub fn sub(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        self.scaled(
            Instr::Sub {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[a, b],
            None,
        )
    }

    pub fn mul(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        self.scaled(
            Instr::Mul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[a, b],
            None,
        )
    }

    pub fn matmul(&mut self, a: NodeIndex, b: NodeIndex) -> R<NodeIndex> {
        self.scaled(
            Instr::MatMul {
                dst: Dst(0),
                a: Reg(0),
                b: Reg(1),
            },
            &[a, b],
            None,
        )
    }

    pub fn transpose(&mut self, x: NodeIndex, perm: &[i64]) -> R<NodeIndex> {
        let instr = Instr::Transpose {
            dst: Dst(0),
            x: Reg(0),
            perm: Ints(perm.to_vec()),
        };
        self.scaled(instr, &[x], None)
    }

    /// The matrix `x` with its two axes swapped.
    pub fn t(&mut self, x: NodeIndex) -> R<NodeIndex> {
        self.transpose(x, &[1, 0])
    }

    pub fn reshape(&mut self, x: NodeIndex, dims: &[usize]) -> R<NodeIndex> {
        self.scaled(
            Instr::Reshape {
                dst: Dst(0),
                x: Reg(0),
            },
            &[x],
            Some(dims),
        )
    }

    /// A convolution of `x` `[N, C, H, W]` by `w` `[M, C/group, kh, kw]`.
    pub fn conv(&mut self, x: NodeIndex, w: NodeIndex, geo: &ConvGeo) -> R<NodeIndex> {
        let (strides, pads, dilations, group) = geo.operands();
        let instr = Instr::Conv {
            dst: Dst(0),
            x: Reg(0),
            w: Reg(1),
            strides,
            pads,
            dilations,
            group,
        };
        self.scaled(instr, &[x, w], None)
    }

    /// The gradient of [`Emit::conv`] with respect to its weight, of shape `wdims`.
    pub fn conv_grad_w(
        &mut self,
        x: NodeIndex,
        gy: NodeIndex,
        geo: &ConvGeo,
        wdims: &[usize],
    ) -> R<NodeIndex> {
        let (strides, pads, dilations, group) = geo.operands();
        let instr = Instr::ConvGradW {
            dst: Dst(0),
            x: Reg(0),
            gy: Reg(1),
            strides,
            pads,
            dilations,
            group,
        };
        self.scaled(instr, &[x, gy], Some(wdims))
    }

    /// The gradient of [`Emit::conv`] with respect to its input, of shape `xdims`.
    pub fn conv_grad_x(
        &mut self,
        gy: NodeIndex,
        w: NodeIndex,
        geo: &ConvGeo,
        xdims: &[usize],
    ) -> R<NodeIndex> {
        let (strides, pads, dilations, group) = geo.operands();
        let instr = Instr::ConvGradX {
            dst: Dst(0),
            gy: Reg(0),
            w: Reg(1),
            strides,
            pads,
            dilations,
            group,
        };
        self.scaled(instr, &[gy, w], Some(xdims))
    }

    /// Sum over each `kernel` window moved by `strides` (no padding).
    pub fn sumpool(
        &mut self,
        x: NodeIndex,
        kernel: [usize; 2],
        strides: [usize; 2],
    ) -> R<NodeIndex> {
        let (kernel, strides, pads, dilations) = plain_window(kernel, strides);
        let instr = Instr::SumPool {
            dst: Dst(0),
            x: Reg(0),
            kernel,
            strides,
            pads,
            dilations,
        };
        self.scaled(instr, &[x], None)
    }

    /// Maximum over each `kernel` window moved by `strides` (no padding).
    pub fn maxpool(
        &mut self,
        x: NodeIndex,
        kernel: [usize; 2],
        strides: [usize; 2],
    ) -> R<NodeIndex> {
        let (kernel, strides, pads, dilations) = plain_window(kernel, strides);
        let instr = Instr::MaxPool {
            dst: Dst(0),
            x: Reg(0),
            kernel,
            strides,
            pads,
            dilations,
        };
        self.scaled(instr, &[x], None)
    }

    /// The windows of `x` as `[kh·kw, N, C, OH, OW]` (no padding).
    pub fn window(
        &mut self,
        x: NodeIndex,
        kernel: [usize; 2],
        strides: [usize; 2],
    ) -> R<NodeIndex> {
        let (kernel, strides, pads, dilations) = plain_window(kernel, strides);
        let instr = Instr::Window {
            dst: Dst(0),
            x: Reg(0),
            kernel,
            strides,
            pads,
            dilations,
        };
        self.scaled(instr, &[x], None)
    }

    /// Windows `[kh·kw, N, C, OH, OW]` added back onto `[N, C, H, W]` (`xdims`).
    pub fn unwindow(
        &mut self,
        x: NodeIndex,
        kernel: [usize; 2],
        strides: [usize; 2],
        xdims: &[usize],
    ) -> R<NodeIndex> {
        let (kernel, strides, pads, dilations) = plain_window(kernel, strides);
        let instr = Instr::Unwindow {
            dst: Dst(0),
            x: Reg(0),
            kernel,
            strides,
            pads,
            dilations,
        };
        self.scaled(instr, &[x], Some(xdims))
    }

    /// Elements `starts + i·steps` of `x` along each axis, `dims` of them.
    pub fn slice(
        &mut self,
        x: NodeIndex,
        starts: &[usize],
        steps: &[usize],
        dims: &[usize],
    ) -> R<NodeIndex> {
        let instr = Instr::Slice {
            dst: Dst(0),
            x: Reg(0),
            starts: Ints(starts.iter().map(|&v| v as i64).collect()),
            steps: Ints(steps.iter().map(|&v| v as i64).collect()),
        };
        self.scaled(instr, &[x], Some(dims))
    }

    /// The operands one after the other along `axis`.
    pub fn concat(&mut self, xs: &[NodeIndex], axis: usize) -> R<NodeIndex> {
        let instr = Instr::Concat {
            dst: Dst(0),
            xs: Regs((0..xs.len() as u32).collect()),
            axis: Int(axis as i64),
        };
        self.scaled(instr, xs, None)
    }

    /// `clamp(x, lo, hi)`, same scale.
    pub fn clamp(&mut self, x: NodeIndex, lo: i64, hi: i64) -> R<NodeIndex> {
        let instr = Instr::Clamp {
            dst: Dst(0),
            x: Reg(0),
            lo: Int(lo),
            hi: Int(hi),
        };
        self.scaled(instr, &[x], None)
    }

    /// The same integers read with `frac` fractional bits.
    pub fn cast(&mut self, x: NodeIndex, frac: u32) -> R<NodeIndex> {
        let dims = self.dims(x);
        let (lo, hi) = (self.g.decl(x).lo, self.g.decl(x).hi);
        let dtype = of_frac(frac).unwrap_or(DType::fitting(lo, hi));
        self.node(
            Instr::Cast {
                dst: Dst(0),
                x: Reg(0),
            },
            &[x],
            Some(&dims),
            Some(dtype),
        )
    }

    /// `clamp(round_half_even(x · num / den), lo, hi)` with `frac` fractional bits: one
    /// fused requantization.
    pub fn requant(
        &mut self,
        x: NodeIndex,
        (num, den): (i64, i64),
        (lo, hi): (i64, i64),
        frac: u32,
    ) -> R<NodeIndex> {
        let (n, d) = (self.int(num), self.int(den));
        self.requant_by(x, (n, d), (lo, hi), frac)
    }

    /// [`Emit::requant`] with public tensors `num` and `den` that broadcast against `x`
    /// (a factor per column, say).
    pub fn requant_by(
        &mut self,
        x: NodeIndex,
        (n, d): (NodeIndex, NodeIndex),
        (lo, hi): (i64, i64),
        frac: u32,
    ) -> R<NodeIndex> {
        let z = self.int(0);
        let instr = Instr::Requant {
            dst: Dst(0),
            x: Reg(0),
            num: Reg(1),
            den: Reg(2),
            zp: Reg(3),
            lo: Int(lo),
            hi: Int(hi),
        };
        self.node(instr, &[x, n, d, z], None, of_frac(frac))
    }

    /// `round_half_even(x · num / den)` with `frac` fractional bits.
    pub fn rescale(&mut self, x: NodeIndex, (num, den): (i64, i64), frac: u32) -> R<NodeIndex> {
        let (n, d) = (self.int(num), self.int(den));
        let instr = Instr::Rescale {
            dst: Dst(0),
            x: Reg(0),
            num: Reg(1),
            den: Reg(2),
        };
        self.node(instr, &[x, n, d], None, of_frac(frac))
    }

    /// `x` with `bits` fewer fractional bits, rounded half to even and clipped to
    /// `[lo, hi]` (in the result's scale).
    pub fn trunc(&mut self, x: NodeIndex, bits: u32, (lo, hi): (i64, i64)) -> R<NodeIndex> {
        let frac = self.frac(x) - bits;
        self.requant(x, (1, 1 << bits), (lo, hi), frac)
    }

    /// `table[x − offset]` with `frac` fractional bits.
    pub fn lookup(
        &mut self,
        x: NodeIndex,
        table: Vec<i64>,
        offset: i64,
        frac: u32,
    ) -> R<NodeIndex> {
        let lo = table.iter().copied().min().unwrap_or(0);
        let hi = table.iter().copied().max().unwrap_or(0);
        let n = table.len();
        let t = self.g.add_table(ConstTensor {
            dtype: of_frac(frac).unwrap_or(DType::fitting(lo, hi)),
            dims: vec![n],
            data: table,
        });
        let instr = Instr::Lookup {
            dst: Dst(0),
            x: Reg(0),
            table: Index(t),
            offset: Int(offset),
        };
        self.node(instr, &[x], None, of_frac(frac))
    }

    /// The column of the largest entry of each row of the matrix `x` (`[n, c] → [n]`;
    /// the first on ties, as PyTorch's `argmax`).
    pub fn argmax_rows(&mut self, x: NodeIndex) -> R<NodeIndex> {
        let d = self.dims(x);
        let instr = Instr::ArgMax {
            dst: Dst(0),
            x: Reg(0),
            axis: Int(1),
            select_last: Int(0),
        };
        self.node(instr, &[x], Some(&d[..1]), None)
    }

    /// Sum of the rows of the matrix `x` (`[n, m] → [m]`): a product with public ones.
    pub fn sum_rows(&mut self, x: NodeIndex) -> R<NodeIndex> {
        let d = self.dims(x);
        let ones = self.konst(0, &[1, d[0]], vec![1; d[0]]);
        let s = self.matmul(ones, x)?;
        self.reshape(s, &[d[1]])
    }

    /// Sum along the last axis of the matrix `x` (`[n, m] → [n, 1]`).
    pub fn sum_cols(&mut self, x: NodeIndex) -> R<NodeIndex> {
        let d = self.dims(x);
        let ones = self.konst(0, &[d[1], 1], vec![1; d[1]]);
        self.matmul(x, ones)
    }
}
