//! The text assembly language: `qmpc disasm` prints it, `qmpc asm` reads it back into the
//! identical binary program.
//!
//! ```text
//! .program name="lenet", trunc=exact
//! .reg %0, type=i8, dims=[1, 1, 28, 28], batched=1, vis=secret, lo=-128, hi=127
//! .const 0, type=i64, dims=[1], data=[-128]
//! .input 0, name="input", external=f32, type=i8, dims=[1, 1, 28, 28], batched=1, scale=[0.007874016], zero_point=[0], axis=0
//! %0 = input index=0, node="input"
//! ```

mod ast;
mod lexer;
lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, unused)]
    grammar,
    "/asm/grammar.rs"
);

use super::operand::AsmValue;
use super::ops::Instr;
use super::program::*;
use crate::types::{DType, TensorType, Visibility};
use ast::{Arg, Stmt};
use qmpc_semantics::TruncMode;

/// An assembly error, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct AsmError {
    pub line: usize,
    pub msg: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Parse assembly text into a program.
pub fn assemble(text: &str) -> Result<Program, AsmError> {
    let stmts = grammar::FileParser::new()
        .parse(lexer::tokens(text))
        .map_err(|e| {
            use lalrpop_util::ParseError::*;
            let (at, msg) = match e {
                InvalidToken { location } => (location, "invalid token".to_string()),
                UnrecognizedEof { location, .. } => {
                    (location, "unexpected end of file".to_string())
                }
                UnrecognizedToken {
                    token: (l, t, _),
                    expected,
                } => (
                    l,
                    format!("unexpected {t:?}, expected one of {}", expected.join(" ")),
                ),
                ExtraToken { token: (l, t, _) } => (l, format!("unexpected {t:?}")),
                User { .. } => (0, "invalid token".to_string()),
            };
            AsmError {
                line: line_of(text, at),
                msg,
            }
        })?;
    let mut b = Builder::default();
    for s in stmts {
        let line = line_of(text, s.at);
        b.stmt(s).map_err(|msg| AsmError { line, msg })?;
    }
    b.finish().map_err(|msg| AsmError {
        line: line_of(text, text.len()),
        msg,
    })
}

#[derive(Default)]
struct Builder {
    name: Option<String>,
    trunc: Option<TruncMode>,
    rounds: RoundSchedule,
    registers: Vec<RegDecl>,
    consts: Vec<ConstTensor>,
    inputs: Vec<InputDecl>,
    weights: Vec<WeightDecl>,
    outputs: Vec<OutputDecl>,
    states: Vec<StateDecl>,
    code: Vec<Instr>,
    origins: Vec<String>,
}

/// Named arguments of a directive, taken one by one.
struct Args {
    word: String,
    positional: Vec<AsmValue>,
    named: Vec<(String, AsmValue)>,
}

impl Args {
    fn new(word: &str, args: Vec<Arg>) -> Args {
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for a in args {
            match a.key {
                Some(k) => named.push((k, a.value)),
                None => positional.push(a.value),
            }
        }
        Args {
            word: word.to_string(),
            positional,
            named,
        }
    }
    fn opt(&mut self, key: &str) -> Option<AsmValue> {
        let p = self.named.iter().position(|(k, _)| k == key)?;
        Some(self.named.remove(p).1)
    }
    fn get(&mut self, key: &str) -> Result<AsmValue, String> {
        self.opt(key)
            .ok_or_else(|| format!("`{}` needs `{key}=`", self.word))
    }
    fn int(&mut self, key: &str) -> Result<i64, String> {
        match self.get(key)? {
            AsmValue::Int(i) => Ok(i),
            v => Err(format!(
                "`{}` `{key}`: expected an integer, found {v}",
                self.word
            )),
        }
    }
    fn string(&mut self, key: &str) -> Result<String, String> {
        match self.get(key)? {
            AsmValue::Str(s) => Ok(s),
            v => Err(format!(
                "`{}` `{key}`: expected a string, found {v}",
                self.word
            )),
        }
    }
    fn ident(&mut self, key: &str) -> Result<String, String> {
        match self.get(key)? {
            AsmValue::Ident(s) => Ok(s),
            v => Err(format!(
                "`{}` `{key}`: expected a name, found {v}",
                self.word
            )),
        }
    }
    fn ints(&mut self, key: &str) -> Result<Vec<i64>, String> {
        match self.get(key)? {
            AsmValue::List(xs) => xs
                .into_iter()
                .map(|x| match x {
                    AsmValue::Int(i) => Ok(i),
                    v => Err(format!(
                        "`{}` `{key}`: expected integers, found {v}",
                        self.word
                    )),
                })
                .collect(),
            v => Err(format!(
                "`{}` `{key}`: expected a list, found {v}",
                self.word
            )),
        }
    }
    fn floats(&mut self, key: &str) -> Result<Vec<f32>, String> {
        match self.get(key)? {
            AsmValue::List(xs) => xs
                .into_iter()
                .map(|x| match x {
                    AsmValue::Float(f) => Ok(f as f32),
                    AsmValue::Int(i) => Ok(i as f32),
                    v => Err(format!(
                        "`{}` `{key}`: expected numbers, found {v}",
                        self.word
                    )),
                })
                .collect(),
            v => Err(format!(
                "`{}` `{key}`: expected a list, found {v}",
                self.word
            )),
        }
    }
    fn index(&mut self, expected: usize) -> Result<(), String> {
        match self.positional.first() {
            Some(AsmValue::Int(i)) if *i == expected as i64 => {
                self.positional.remove(0);
                Ok(())
            }
            Some(v) => Err(format!(
                "`{}` number {v} out of order, expected {expected}",
                self.word
            )),
            None => Err(format!("`{}` needs its number ({expected})", self.word)),
        }
    }
    fn done(self) -> Result<(), String> {
        if let Some(v) = self.positional.first() {
            return Err(format!("`{}`: unexpected argument {v}", self.word));
        }
        if let Some((k, _)) = self.named.first() {
            return Err(format!("`{}` has no argument `{k}`", self.word));
        }
        Ok(())
    }
    fn dtype(&mut self, key: &str) -> Result<DType, String> {
        let n = self.ident(key)?;
        DType::from_name(&n).ok_or_else(|| format!("`{}`: unknown element type `{n}`", self.word))
    }
    fn external(&mut self) -> Result<ExternalType, String> {
        let n = self.ident("external")?;
        ExternalType::from_name(&n)
            .ok_or_else(|| format!("`{}`: unknown external type `{n}`", self.word))
    }
    fn ty(&mut self) -> Result<TensorType, String> {
        let dtype = self.dtype("type")?;
        let dims = self
            .ints("dims")?
            .into_iter()
            .map(|d| {
                usize::try_from(d).map_err(|_| format!("`{}`: negative dimension {d}", self.word))
            })
            .collect::<Result<_, _>>()?;
        let batched = self.int("batched")? != 0;
        Ok(TensorType {
            dtype,
            dims,
            batched,
        })
    }
    fn quant(&mut self) -> Result<Option<QuantParams>, String> {
        if self.named.iter().all(|(k, _)| k != "scale") {
            return Ok(None);
        }
        Ok(Some(QuantParams {
            scale: self.floats("scale")?,
            zero_point: self.ints("zero_point")?,
            axis: usize::try_from(self.int("axis")?).map_err(|_| "negative axis".to_string())?,
            block: if self.named.iter().any(|(k, _)| k == "block") {
                usize::try_from(self.int("block")?).map_err(|_| "negative block".to_string())?
            } else {
                0
            },
        }))
    }
}

impl Builder {
    fn stmt(&mut self, s: Stmt) -> Result<(), String> {
        let Stmt {
            dst, word, args, ..
        } = s;
        if !word.starts_with('.') {
            return self.instr(dst, &word, args);
        }
        if dst.is_some() {
            return Err(format!("directive `{word}` takes no `%N =`"));
        }
        let mut a = Args::new(&word, args);
        match word.as_str() {
            ".program" => {
                self.name = Some(a.string("name")?);
                self.trunc = Some(match a.ident("trunc")?.as_str() {
                    "exact" => TruncMode::Exact,
                    "probabilistic" => TruncMode::Probabilistic,
                    t => return Err(format!("unknown truncation mode `{t}`")),
                });
                if let Some(v) = a.opt("rounds") {
                    self.rounds = match v {
                        AsmValue::Ident(s) if s == "sequential" => RoundSchedule::Sequential,
                        AsmValue::Ident(s) if s == "merged" => RoundSchedule::Merged,
                        v => return Err(format!("unknown round schedule {v}")),
                    };
                }
            }
            ".reg" => {
                match a.positional.first() {
                    Some(AsmValue::Reg(r)) if *r as usize == self.registers.len() => {
                        a.positional.remove(0);
                    }
                    _ => {
                        return Err(format!(
                            "`.reg` must declare %{} next",
                            self.registers.len()
                        ))
                    }
                }
                let ty = a.ty()?;
                let vis = match a.ident("vis")?.as_str() {
                    "secret" => Visibility::Secret,
                    "public" => Visibility::Public,
                    v => return Err(format!("unknown visibility `{v}`")),
                };
                let lo = a.int("lo")?;
                let hi = a.int("hi")?;
                self.registers.push(RegDecl { ty, vis, lo, hi });
            }
            ".const" => {
                a.index(self.consts.len())?;
                let dtype = a.dtype("type")?;
                let dims = a
                    .ints("dims")?
                    .into_iter()
                    .map(|d| d.max(0) as usize)
                    .collect();
                let data = a.ints("data")?;
                self.consts.push(ConstTensor { dtype, dims, data });
            }
            ".input" => {
                a.index(self.inputs.len())?;
                let name = a.string("name")?;
                let external = a.external()?;
                let ty = a.ty()?;
                let quant = a.quant()?;
                self.inputs.push(InputDecl {
                    name,
                    external,
                    quant,
                    ty,
                });
            }
            ".weight" => {
                a.index(self.weights.len())?;
                let name = a.string("name")?;
                let ty = a.ty()?;
                self.weights.push(WeightDecl { name, ty });
            }
            ".state" => {
                a.index(self.states.len())?;
                let name = a.string("name")?;
                let ty = a.ty()?;
                let lo = a.int("lo")?;
                let hi = a.int("hi")?;
                self.states.push(StateDecl { name, ty, lo, hi });
            }
            ".output" => {
                a.index(self.outputs.len())?;
                let name = a.string("name")?;
                let external = a.external()?;
                let dequant = a.quant()?;
                let post = match a.opt("post") {
                    None => PostOp::None,
                    Some(AsmValue::Ident(p)) if p == "softmax" => PostOp::Softmax {
                        axis: a.int("post_axis")?.max(0) as usize,
                    },
                    Some(v) => return Err(format!("unknown post-processing {v}")),
                };
                self.outputs.push(OutputDecl {
                    name,
                    external,
                    dequant,
                    post,
                });
            }
            _ => return Err(format!("unknown directive `{word}`")),
        }
        a.done()
    }

    fn instr(&mut self, dst: Option<u32>, word: &str, args: Vec<Arg>) -> Result<(), String> {
        let mut named = Vec::new();
        let mut origin = String::new();
        for a in args {
            match (a.key, a.value) {
                (Some(k), AsmValue::Str(s)) if k == "node" => origin = s,
                (Some(k), v) => named.push((k, v)),
                (None, v) => {
                    return Err(format!("`{word}`: operand {v} needs a name (`name=value`)"))
                }
            }
        }
        if let Some(d) = dst {
            named.push(("dst".to_string(), AsmValue::Dst(d)));
        }
        let i = Instr::from_asm(word, named)?;
        self.code.push(i);
        self.origins.push(origin);
        Ok(())
    }

    fn finish(self) -> Result<Program, String> {
        Ok(Program {
            name: self.name.ok_or("missing `.program` directive")?,
            trunc: self.trunc.ok_or("missing `.program` directive")?,
            rounds: self.rounds,
            registers: self.registers,
            consts: self.consts,
            inputs: self.inputs,
            weights: self.weights,
            outputs: self.outputs,
            states: self.states,
            code: self.code,
            origins: self.origins,
        })
    }
}

fn list<T: std::fmt::Display>(xs: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = xs.into_iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn ty_text(t: &TensorType) -> String {
    format!(
        "type={}, dims={}, batched={}",
        t.dtype,
        list(&t.dims),
        t.batched as u8
    )
}

fn quant_text(q: &Option<QuantParams>) -> String {
    match q {
        None => String::new(),
        Some(q) => format!(
            ", scale={}, zero_point={}, axis={}{}",
            list(q.scale.iter().map(|s| format!("{s:?}"))),
            list(&q.zero_point),
            q.axis,
            if q.block > 0 {
                format!(", block={}", q.block)
            } else {
                String::new()
            }
        ),
    }
}

/// Print a program as assembly text; [`assemble`] reads it back to the same program.
pub fn disassemble(p: &Program) -> String {
    let mut out = String::new();
    let trunc = match p.trunc {
        TruncMode::Exact => "exact",
        TruncMode::Probabilistic => "probabilistic",
    };
    out.push_str(&format!(
        "; qmpc bytecode, format version {FORMAT_VERSION}\n"
    ));
    out.push_str(&format!(".program name={:?}, trunc={trunc}", p.name));
    if p.rounds != RoundSchedule::Sequential {
        out.push_str(&format!(", rounds={}", p.rounds.name()));
    }
    out.push('\n');
    for (i, inp) in p.inputs.iter().enumerate() {
        out.push_str(&format!(
            ".input {i}, name={:?}, external={}, {}{}\n",
            inp.name,
            inp.external.name(),
            ty_text(&inp.ty),
            quant_text(&inp.quant)
        ));
    }
    for (i, w) in p.weights.iter().enumerate() {
        out.push_str(&format!(
            ".weight {i}, name={:?}, {}\n",
            w.name,
            ty_text(&w.ty)
        ));
    }
    for (i, st) in p.states.iter().enumerate() {
        out.push_str(&format!(
            ".state {i}, name={:?}, {}, lo={}, hi={}\n",
            st.name,
            ty_text(&st.ty),
            st.lo,
            st.hi
        ));
    }
    for (i, o) in p.outputs.iter().enumerate() {
        let post = match o.post {
            PostOp::None => String::new(),
            PostOp::Softmax { axis } => format!(", post=softmax, post_axis={axis}"),
        };
        out.push_str(&format!(
            ".output {i}, name={:?}, external={}{}{post}\n",
            o.name,
            o.external.name(),
            quant_text(&o.dequant)
        ));
    }
    for (i, c) in p.consts.iter().enumerate() {
        out.push_str(&format!(
            ".const {i}, type={}, dims={}, data={}\n",
            c.dtype,
            list(&c.dims),
            list(&c.data)
        ));
    }
    for (i, r) in p.registers.iter().enumerate() {
        out.push_str(&format!(
            ".reg %{i}, {}, vis={}, lo={}, hi={}\n",
            ty_text(&r.ty),
            r.vis.name(),
            r.lo,
            r.hi
        ));
    }
    for (i, ins) in p.code.iter().enumerate() {
        let origin = p.origins.get(i).map(String::as_str).unwrap_or("");
        let sep = if ins.operands().len() > usize::from(ins.dst().is_some()) {
            ", "
        } else {
            " "
        };
        out.push_str(&format!("{}{sep}node={origin:?}\n", ins.to_asm()));
    }
    out
}
