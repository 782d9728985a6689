//! Float arithmetic an exporter leaves between `DequantizeLinear` and `QuantizeLinear`
//! (GELU's `Div`, `Erf`, `Add`, `Mul`; SiLU's `Mul` by its own `Sigmoid`; a `Pow` or an
//! unfolded affine step): while every operand is a function of one quantized tensor's
//! elements `x = i · s` (or a scalar constant), the whole chain is one element-wise function
//! of `i`, evaluated in f64 at compile time for each of the input's values and rounded
//! once at the next `QuantizeLinear` — a table, as for `Sigmoid`.

use super::ops::{arg, check_attrs, one, real_of};
use super::rational::Rational;
use super::sym::{ElemFn, IntVal, Real, Sym};
use super::{attrs, Importer, R};
use crate::onnx::proto::NodeProto;
use crate::onnx::{TensorData, Values};
use std::sync::Arc;

/// An element-wise float function of `x`.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    X,
    Const(f64),
    Unary(Unary, Arc<Expr>),
    Binary(Binary, Arc<Expr>, Arc<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Erf,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    Reciprocal,
    Softplus,
    /// GELU: exact (`0.5·x·(1 + erf(x/√2))`), or with tanh (`approximate = "tanh"`).
    Gelu {
        tanh: bool,
    },
    Elu(f32),
    /// `min(max(x, lo), hi)`.
    Clip(f64, f64),
    /// One of [`ElemFn`]'s named functions.
    Named(NamedFn),
}

/// The functions [`ElemFn`] names, inside a larger expression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NamedFn {
    LeakyRelu(f32),
    Sigmoid,
    HardSigmoid(f32, f32),
    HardSwish,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

impl Unary {
    pub fn eval(self, x: f64) -> f64 {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let hard = |x: f64, a: f32, b: f32| (a as f64 * x + b as f64).clamp(0.0, 1.0);
        match self {
            Unary::Erf => libm::erf(x),
            Unary::Tanh => x.tanh(),
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Reciprocal => 1.0 / x,
            Unary::Softplus => x.exp().ln_1p(),
            Unary::Gelu { tanh: false } => {
                0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
            }
            Unary::Gelu { tanh: true } => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            }
            Unary::Elu(a) => {
                if x < 0.0 {
                    a as f64 * x.exp_m1()
                } else {
                    x
                }
            }
            Unary::Clip(lo, hi) => x.max(lo).min(hi),
            Unary::Named(NamedFn::LeakyRelu(a)) => {
                if x < 0.0 {
                    a as f64 * x
                } else {
                    x
                }
            }
            Unary::Named(NamedFn::Sigmoid) => sigmoid(x),
            Unary::Named(NamedFn::HardSigmoid(a, b)) => hard(x, a, b),
            Unary::Named(NamedFn::HardSwish) => x * hard(x, 1.0 / 6.0, 0.5),
        }
    }
}

impl Binary {
    pub fn eval(self, a: f64, b: f64) -> f64 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Pow => a.powf(b),
            Binary::Max => a.max(b),
            Binary::Min => a.min(b),
        }
    }
}

impl Expr {
    pub fn eval(&self, x: f64) -> f64 {
        match self {
            Expr::X => x,
            Expr::Const(c) => *c,
            Expr::Unary(u, e) => u.eval(e.eval(x)),
            Expr::Binary(b, l, r) => b.eval(l.eval(x), r.eval(x)),
        }
    }
}

impl ElemFn {
    /// This function as an expression of `x` (none for a per-channel one).
    pub fn expr(&self) -> Option<Expr> {
        let named = |n| Expr::Unary(Unary::Named(n), Arc::new(Expr::X));
        Some(match self {
            ElemFn::LeakyRelu(a) => named(NamedFn::LeakyRelu(*a)),
            ElemFn::Sigmoid => named(NamedFn::Sigmoid),
            ElemFn::HardSigmoid { alpha, beta } => named(NamedFn::HardSigmoid(*alpha, *beta)),
            ElemFn::HardSwish => named(NamedFn::HardSwish),
            ElemFn::Expr(e) => (**e).clone(),
            ElemFn::ChannelAffine(_) => return None,
        })
    }
}

/// `e` with every `X` replaced by `inner`.
fn substitute(e: &Expr, inner: &Expr) -> Expr {
    match e {
        Expr::X => inner.clone(),
        Expr::Const(c) => Expr::Const(*c),
        Expr::Unary(u, a) => Expr::Unary(*u, Arc::new(substitute(a, inner))),
        Expr::Binary(b, l, r) => Expr::Binary(
            *b,
            Arc::new(substitute(l, inner)),
            Arc::new(substitute(r, inner)),
        ),
    }
}

/// `f` applied after whatever `r` already applies.
pub fn then(r: &Real, f: ElemFn) -> R<ElemFn> {
    match &r.func {
        None => Ok(f),
        Some(g) => match (f.expr(), g.expr()) {
            (Some(f), Some(g)) => Ok(ElemFn::Expr(Arc::new(substitute(&f, &g)))),
            _ => Err("a float function after a per-channel step (an unfolded \
                      BatchNormalization) must be quantized first"
                .into()),
        },
    }
}

/// An operand of an element-wise expression.
enum Term {
    Const(f64),
    /// A function of the integers `i` of `node` (not of `i · scale`: the operands of one
    /// op may carry the same integers at different scales, as GELU's `Div` makes them).
    Of {
        node: petgraph::stable_graph::NodeIndex,
        expr: Expr,
    },
}

fn term(s: &Sym) -> Option<Term> {
    match s {
        Sym::Const(t) if t.is_float() && t.numel() == 1 => {
            t.floats().map(|v| Term::Const(v[0] as f64))
        }
        Sym::Real(r) if r.divisor.is_none() && r.scale.is_scalar() => match r.v {
            IntVal::Node(node) => {
                let scaled = Expr::Binary(
                    Binary::Mul,
                    Arc::new(Expr::X),
                    Arc::new(Expr::Const(r.scale.get(0).to_f64())),
                );
                let f = match &r.func {
                    None => Expr::X,
                    Some(f) => f.expr()?,
                };
                Some(Term::Of {
                    node,
                    expr: substitute(&f, &scaled),
                })
            }
            IntVal::Const { .. } => None,
        },
        _ => None,
    }
}

/// `op(a, b)` as one function of a single quantized tensor, where both operands are such
/// functions of the same tensor or scalar constants (not both constants). The result is
/// that function of the tensor's integers (scale 1).
pub(super) fn binary(a: &Sym, b: &Sym, op: Binary) -> Option<Real> {
    let (node, l, r) = match (term(a)?, term(b)?) {
        (Term::Of { node, expr: l }, Term::Of { node: n2, expr: r }) if node == n2 => (node, l, r),
        (Term::Of { node, expr }, Term::Const(c)) => (node, expr, Expr::Const(c)),
        (Term::Const(c), Term::Of { node, expr }) => (node, Expr::Const(c), expr),
        _ => return None,
    };
    let e = Expr::Binary(op, Arc::new(l), Arc::new(r));
    Some(Real {
        func: Some(ElemFn::Expr(Arc::new(e))),
        ..Real::plain(
            IntVal::Node(node),
            super::sym::Scale::scalar(Rational::int(1)),
        )
    })
}

/// Fold a unary function over a float constant (f64, then f32 as ONNX stores it).
fn fold(t: &TensorData, u: Unary) -> R<TensorData> {
    let v = t
        .floats()
        .ok_or("an element-wise float function of an integer constant")?;
    Ok(TensorData {
        values: Values::Float(v.iter().map(|&x| u.eval(x as f64) as f32).collect()),
        ..t.clone()
    })
}

/// A unary float op: folded over constants, else appended to a real's function.
fn unary(imp: &mut Importer, inputs: &[Option<Sym>], u: Unary) -> R<Vec<Sym>> {
    match arg(inputs, 0, "X")? {
        Sym::Const(t) => one(Sym::Const(fold(t, u)?)),
        s => {
            let mut r = real_of(imp, s)?;
            if r.divisor.is_some() {
                return Err("an averaged tensor must be quantized before a float function".into());
            }
            if !r.scale.is_scalar() {
                return Err(
                    "a float function of a per-channel quantized tensor is not supported".into(),
                );
            }
            let f = ElemFn::Expr(Arc::new(Expr::Unary(u, Arc::new(Expr::X))));
            r.func = Some(then(&r, f)?);
            r.raw = None;
            one(Sym::Real(r))
        }
    }
}

macro_rules! unary_ops {
    ($($name:ident => $u:expr;)*) => {
        $(pub(super) fn $name(
            imp: &mut Importer,
            node: &NodeProto,
            _o: i64,
            inputs: &[Option<Sym>],
        ) -> R<Vec<Sym>> {
            check_attrs(node, &[])?;
            unary(imp, inputs, $u)
        })*
    };
}

unary_ops! {
    erf => Unary::Erf;
    tanh => Unary::Tanh;
    exp => Unary::Exp;
    log => Unary::Log;
    sqrt => Unary::Sqrt;
    neg => Unary::Neg;
    abs => Unary::Abs;
    reciprocal => Unary::Reciprocal;
    softplus => Unary::Softplus;
}

pub(super) fn gelu(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["approximate"])?;
    let tanh = match attrs(node).string("approximate", "none")?.as_str() {
        "none" => false,
        "tanh" => true,
        a => return Err(format!("approximate = `{a}` (ONNX allows none and tanh)")),
    };
    unary(imp, inputs, Unary::Gelu { tanh })
}

pub(super) fn elu(
    imp: &mut Importer,
    node: &NodeProto,
    _o: i64,
    inputs: &[Option<Sym>],
) -> R<Vec<Sym>> {
    check_attrs(node, &["alpha"])?;
    unary(imp, inputs, Unary::Elu(attrs(node).float("alpha", 1.0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_from_its_parts_equals_gelu() {
        // Div(x, √2) → Erf → Add 1 → Mul x → Mul 0.5, as exporters spell GELU.
        let x = Arc::new(Expr::X);
        let div = Expr::Binary(Binary::Div, x.clone(), Arc::new(Expr::Const(2f64.sqrt())));
        let erf = Expr::Unary(Unary::Erf, Arc::new(div));
        let add = Expr::Binary(Binary::Add, Arc::new(erf), Arc::new(Expr::Const(1.0)));
        let mul = Expr::Binary(Binary::Mul, x, Arc::new(add));
        let half = Expr::Binary(Binary::Mul, Arc::new(mul), Arc::new(Expr::Const(0.5)));
        for i in -40..=40 {
            let v = i as f64 * 0.1;
            let want = Unary::Gelu { tanh: false }.eval(v);
            assert!((half.eval(v) - want).abs() < 1e-12, "{v}");
        }
        assert!((libm::erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-15);
    }

    #[test]
    fn functions_compose_after_named_ones() {
        let r = Real {
            func: Some(ElemFn::Sigmoid),
            ..Real::plain(
                IntVal::Node(petgraph::stable_graph::NodeIndex::new(0)),
                super::super::sym::Scale::scalar(Rational::int(1)),
            )
        };
        let f = then(
            &r,
            ElemFn::Expr(Arc::new(Expr::Unary(Unary::Log, Arc::new(Expr::X)))),
        )
        .unwrap();
        let ElemFn::Expr(e) = f else {
            panic!("an expression")
        };
        let v: f64 = 0.3;
        assert!((e.eval(v) - (1.0 / (1.0 + (-v).exp())).ln()).abs() < 1e-15);
    }
}
