//! Helpers of the protocols' unit tests.

use crate::net::{loopback, Hello, Mesh, Stats, Timeouts, Transport};
use crate::ring::rescale as clear_rescale;
use crate::word::matmul_words;
use crate::{Bounds, MatDims, PartyId, Protocol, ProtocolError, Requant, TruncMode};

type R<T> = Result<T, ProtocolError>;
use std::sync::{Arc, Mutex};

pub use crate::viewtest::{assert_views_independent, CoalitionCoins, Recorder};

/// Runs `f` in `n` parties, each with its mesh over loopback; returns their results.
pub fn on_mesh<T: Send>(n: usize, protocol: &str, f: impl Fn(PartyId, Mesh) -> T + Sync) -> Vec<T> {
    let (addrs, listeners) = loopback(n).unwrap();
    let hello = Hello {
        claim: Vec::new(),
        program: [7; 32],
        protocol: protocol.into(),
        parties: n,
        roles: String::new(),
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let (addrs, hello, f) = (&addrs, &hello, &f);
                s.spawn(move || {
                    f(
                        i,
                        Mesh::with_listener(i, l, addrs, hello, Timeouts::default()).unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A deterministic spread of test values in `[lo, hi]`, including both ends.
pub fn values(n: usize, lo: i64, hi: i64, seed: u64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let span = (hi as i128 - lo as i128 + 1) as u128;
    let mut v: Vec<i64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (lo as i128 + (s as u128 % span) as i128) as i64
        })
        .collect();
    if n >= 2 {
        v[0] = lo;
        v[1] = hi;
    }
    v
}

/// What every party (a dealer holds nothing) does in a test.
pub trait Script: Sync {
    fn run<P: Protocol>(&self, p: &mut P) -> R<Vec<Option<Vec<i64>>>>;
}

/// The results revealed to party `to`.
pub fn at(out: &[(Vec<Option<Vec<i64>>>, Stats)], to: PartyId) -> Vec<Vec<i64>> {
    for (i, (r, _)) in out.iter().enumerate() {
        if i != to {
            assert!(r.iter().all(Option::is_none), "party {i} learnt an output");
        }
    }
    out[to].0.iter().map(|r| r.clone().unwrap()).collect()
}

/// Every party's measured rounds and bytes of `out` equal to what `rounds` predicts
/// (`what` names the run in a failure).
pub fn assert_traffic(
    out: &[(Vec<Option<Vec<i64>>>, Stats)],
    rounds: &[crate::cost::Round],
    what: &str,
) {
    let want = crate::cost::per_party(rounds, out.len());
    for (i, (_, stats)) in out.iter().enumerate() {
        assert_eq!(
            (stats.rounds, stats.bytes_sent),
            (want[i].rounds, want[i].bytes_sent),
            "party {i} of {what}"
        );
    }
}

/// Party 0 inputs `x`, party `n − 1` inputs `y`; both go through `op`; results to `to`.
pub struct Binary<F> {
    pub x: Vec<i64>,
    pub y: Vec<i64>,
    pub to: PartyId,
    pub op: F,
}

impl<F> Script for Binary<F>
where
    F: Fn(usize) -> Vec<Call> + Sync,
{
    fn run<P: Protocol>(&self, p: &mut P) -> R<Vec<Option<Vec<i64>>>> {
        let n = p.parties();
        let me = p.party();
        let x = p.input(0, (me == 0).then_some(&self.x[..]), self.x.len())?;
        let y = p.input(n - 1, (me == n - 1).then_some(&self.y[..]), self.y.len())?;
        let mut out = Vec::new();
        for call in (self.op)(n) {
            let r = call.apply(p, &x, &y)?;
            out.push(p.reveal(&r, self.to)?);
        }
        Ok(out)
    }
}

/// Party 0 inputs `x`, the last party `y`; `calls` run one on the other's result (each
/// with `y` as its second operand), and only the last result is revealed, to party 1.
pub struct Chain {
    pub x: Vec<i64>,
    pub y: Vec<i64>,
    pub calls: Vec<Call>,
}

impl Script for Chain {
    fn run<P: Protocol>(&self, p: &mut P) -> R<Vec<Option<Vec<i64>>>> {
        let (n, me) = (p.parties(), p.party());
        let mut v = p.input(0, (me == 0).then_some(&self.x[..]), self.x.len())?;
        let y = p.input(n - 1, (me == n - 1).then_some(&self.y[..]), self.y.len())?;
        for call in &self.calls {
            v = call.apply(p, &v, &y)?;
        }
        Ok(vec![p.reveal(&v, 1)?])
    }
}

impl Chain {
    /// Twenty elements through products, a clamp, a lookup, a max and a requantization
    /// with no reveal between: more pairs, openings and relations than the protocols'
    /// tests let wait for a check (64), so checks fall inside and between calls.
    pub fn past_a_check() -> Chain {
        let b = Bounds { lo: -40, hi: 40 };
        Chain {
            x: values(20, b.lo, b.hi, 7),
            y: values(20, -1, 1, 8),
            calls: vec![
                Call::Mul,
                Call::Mul,
                Call::Clamp(-10, 30, b),
                Call::Lookup((0..81).map(|i| (i * 5) % 17 - 8).collect(), -40),
                Call::Mul,
                Call::Max(b),
                Call::Requant(requants(20)[1].clone(), b),
            ],
        }
    }

    /// What party 1 receives, computed in the clear.
    pub fn clear(&self) -> Vec<i64> {
        self.calls
            .iter()
            .fold(self.x.clone(), |v, call| call.clear(&v, &self.y))
    }

    /// The run's rounds among `n` parties, each call costed by one `Costs` after those
    /// before it (what a protocol carries from call to call counts), and each costed by a
    /// fresh one as if first in a run.
    pub fn costs(
        &self,
        n: usize,
        fresh: impl Fn() -> Box<dyn crate::cost::Costs>,
    ) -> (crate::cost::Rounds, crate::cost::Rounds) {
        use crate::cost::{Call as C, Costs, Rounds};
        let len = self.x.len();
        let steps = self.calls.len() + 3;
        // Step `i` of the run (the two inputs, the calls, the reveal) costed by `c`.
        let step = |c: &dyn Costs, i: usize| -> Rounds {
            let ask = |call: C| c.rounds(call).expect("costs");
            match i {
                0 => ask(C::Input { owner: 0, len }),
                1 => ask(C::Input { owner: n - 1, len }),
                i if i == steps - 1 => ask(C::Reveal { len, to: 1 }),
                i => call_cost(c, &self.calls[i - 2], len),
            }
        };
        let one = fresh();
        let carried = (0..steps).flat_map(|i| step(&*one, i)).collect();
        let alone = (0..steps).flat_map(|i| step(&*fresh(), i)).collect();
        (carried, alone)
    }
}

/// The rounds of `call` on `len` elements, after the calls `c` costed before it.
pub fn call_cost(c: &dyn crate::cost::Costs, call: &Call, len: usize) -> crate::cost::Rounds {
    use crate::cost::Call as C;
    let mode = TruncMode::Exact;
    let asked = match call {
        Call::Mul => C::Mul { len },
        Call::MatMul(d) => C::MatMul(*d),
        Call::Rescale(num, den, bounds) => C::Rescale {
            num,
            den,
            bounds: *bounds,
            mode,
        },
        Call::Requant(q, bounds) => C::Requantize {
            q,
            bounds: *bounds,
            mode,
        },
        Call::Clamp(lo, hi, bounds) => C::Clamp {
            len,
            lo: *lo,
            hi: *hi,
            bounds: *bounds,
        },
        Call::Max(bounds) => C::Max {
            len,
            bounds: *bounds,
        },
        Call::Argmax(row_len, select_last, bounds) => C::Argmax {
            len,
            row_len: *row_len,
            select_last: *select_last,
            bounds: *bounds,
        },
        Call::Lookup(t, _) => crate::cost::lookup_call(len, t),
    };
    c.rounds(asked).unwrap()
}

/// One primitive call on the inputs `x` and `y`.
#[derive(Clone, Debug)]
pub enum Call {
    Mul,
    MatMul(MatDims),
    Rescale(Vec<i64>, Vec<i64>, Bounds),
    Requant(Requant, Bounds),
    Clamp(i64, i64, Bounds),
    Max(Bounds),
    Argmax(usize, bool, Bounds),
    Lookup(Vec<i64>, i64),
}

impl Call {
    pub fn apply<P: Protocol>(&self, p: &mut P, x: &P::Shares, y: &P::Shares) -> R<P::Shares> {
        let e = TruncMode::Exact;
        match self {
            Call::Mul => p.mul(x, y),
            Call::MatMul(d) => p.matmul(x, y, *d),
            Call::Rescale(num, den, b) => p.rescale(x, num, den, *b, e),
            Call::Requant(q, b) => p.requantize(x, q, *b, e),
            Call::Clamp(lo, hi, b) => p.clamp(x, *lo, *hi, *b),
            Call::Max(b) => p.max(x, y, *b),
            Call::Argmax(row, last, b) => p.argmax(x, *row, *last, *b),
            Call::Lookup(t, off) => p.lookup(x, t, *off),
        }
    }

    /// The plaintext meaning.
    pub fn clear(&self, x: &[i64], y: &[i64]) -> Vec<i64> {
        match self {
            Call::Mul => x.iter().zip(y).map(|(a, b)| a * b).collect(),
            Call::MatMul(d) => {
                let lift = |v: &[i64]| v.iter().map(|&e| e as u64).collect::<Vec<u64>>();
                matmul_words(&lift(x), &lift(y), *d)
                    .into_iter()
                    .map(|e| e as i64)
                    .collect()
            }
            Call::Rescale(num, den, _) => (0..x.len())
                .map(|i| clear_rescale(x[i], num[i], den[i]))
                .collect(),
            Call::Requant(q, _) => (0..x.len()).map(|i| q.apply(i, x[i])).collect(),
            Call::Clamp(lo, hi, _) => x.iter().map(|v| (*v).clamp(*lo, *hi)).collect(),
            Call::Max(_) => x.iter().zip(y).map(|(a, b)| *a.max(b)).collect(),
            Call::Argmax(row, last, _) => x
                .chunks(*row)
                .map(|r| {
                    let best = *r.iter().max().unwrap();
                    let pos = if *last {
                        r.iter().rposition(|&v| v == best)
                    } else {
                        r.iter().position(|&v| v == best)
                    };
                    pos.unwrap() as i64
                })
                .collect(),
            Call::Lookup(t, off) => x.iter().map(|v| t[(v - off) as usize]).collect(),
        }
    }
}

/// Requantizations of `n` elements: power-of-two divisors with per-element parameters,
/// general divisors into `[0, 255]`, and exact ties of `2^10`.
pub fn requants(n: usize) -> [Requant; 3] {
    let pow2 = Requant {
        num: (0..n).map(|i| 1000 + i as i64).collect(),
        den: (0..n).map(|i| 1 << (14 + i % 3)).collect(),
        zp: (0..n).map(|i| i as i64 % 5 - 2).collect(),
        lo: -128,
        hi: 127,
    };
    let general = Requant {
        num: vec![7; n],
        den: (0..n).map(|i| [9, 10, 1000, 3][i % 4]).collect(),
        zp: vec![3; n],
        lo: 0,
        hi: 255,
    };
    let tie = Requant {
        num: vec![1; n],
        den: vec![1 << 10; n],
        zp: vec![0; n],
        lo: -1000,
        hi: 1000,
    };
    [pow2, general, tie]
}

/// Party 0's secret `x` through every primitive, results to party 0: the view tests' script.
pub fn view_script(x: &[i64]) -> Binary<impl Fn(usize) -> Vec<Call> + Sync> {
    let b = Bounds { lo: -100, hi: 100 };
    let len = x.len();
    let calls = vec![
        Call::Mul,
        Call::Rescale(vec![3; len], vec![7; len], b),
        Call::Requant(
            Requant {
                num: vec![77; len],
                den: vec![1 << 9; len],
                zp: vec![-3; len],
                lo: -10,
                hi: 9,
            },
            b,
        ),
        Call::Clamp(-20, 20, b),
        Call::Max(b),
        Call::Argmax(4, false, b),
        Call::Lookup((0..201).map(|i| (i * 7) % 13).collect(), -100),
    ];
    Binary {
        x: x.to_vec(),
        y: vec![0; len],
        to: 0,
        op: move |_| calls.clone(),
    }
}

/// A transport wrapper that records what each of `n` parties receives into `logs`.
pub fn recording(
    logs: &[Arc<Mutex<Vec<u8>>>],
) -> impl Fn(PartyId, Mesh) -> Box<dyn Transport> + Sync + '_ {
    move |i, mesh| {
        Box::new(Recorder {
            inner: Box::new(mesh),
            seen: logs[i].clone(),
        })
    }
}

/// One byte log per party, for [`Recorder`]s.
pub fn logs(n: usize) -> Vec<Arc<Mutex<Vec<u8>>>> {
    (0..n).map(|_| Arc::new(Mutex::new(Vec::new()))).collect()
}

/// What each log holds.
pub fn logged(logs: &[Arc<Mutex<Vec<u8>>>]) -> Vec<Vec<u8>> {
    logs.iter().map(|s| s.lock().unwrap().clone()).collect()
}

/// The cases of the tests that hold a protocol's own selection and lookup to the generic
/// ones (`func::gates::Generic`): `n` values in `±3000` (party 0's with ties of `2^10`,
/// an even and an odd quotient, and a repeated value) and `n` of party `n − 1`'s, through
/// requantizations of every divisor kind, a signed rescale, a clamp, max, argmax and a
/// 6001-entry lookup.
pub fn generic_cases(n: usize, seed: u64) -> (Vec<i64>, Vec<i64>, Vec<Call>) {
    let b = Bounds {
        lo: -3000,
        hi: 3000,
    };
    let mut x = values(n, b.lo, b.hi, seed);
    let y = values(n, b.lo, b.hi, seed + 1);
    x[2] = 1 << 9;
    x[3] = -(3 << 9);
    x[5] = x[9];
    let half = n as i64 / 2;
    let mut calls: Vec<Call> = requants(n)
        .into_iter()
        .map(|q| Call::Requant(q, b))
        .collect();
    calls.extend([
        Call::Rescale((0..n as i64).map(|i| i - half).collect(), vec![12; n], b),
        Call::Clamp(-20, 100, b),
        Call::Max(b),
        Call::Argmax(if n.is_multiple_of(8) { 8 } else { 4 }, false, b),
        Call::Lookup((0..6001).map(|i| (i * 37) % 91 - 45).collect(), b.lo),
    ]);
    (x, y, calls)
}

/// `call` on party 0's `x` and party `n − 1`'s `y`, revealed to party 1.
pub fn one_call<'a>(
    x: &[i64],
    y: &[i64],
    call: &'a Call,
) -> Binary<impl Fn(usize) -> Vec<Call> + Sync + 'a> {
    Binary {
        x: x.to_vec(),
        y: y.to_vec(),
        to: 1,
        op: move |_| vec![call.clone()],
    }
}

/// The protocol's own run of `call` and the generic one both reveal its plaintext
/// meaning to party 1, and nothing to anyone else.
pub fn assert_agrees(
    own: &[(Vec<Option<Vec<i64>>>, Stats)],
    generic: &[(Vec<Option<Vec<i64>>>, Stats)],
    call: &Call,
    x: &[i64],
    y: &[i64],
    what: &str,
) {
    assert_eq!(at(own, 1), vec![call.clear(x, y)], "{what}");
    assert_eq!(at(generic, 1), at(own, 1), "{what}");
}
