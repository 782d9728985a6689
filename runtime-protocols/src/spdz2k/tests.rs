//! Every `spdz2k` primitive against the plaintext meaning, `n` parties and the dealer
//! over loopback TCP; the cost formulas (a counting dealer) against the measured traffic;
//! and parties that lie, caught by the checks before any output.

use super::*;
use crate::cost::Ask as _;
use crate::cost::Rounds;
use crate::net::{Mesh, NetError};
use crate::testutil::{
    assert_traffic, at, call_cost, on_mesh, requants, values, Binary, Call, Chain, Script,
};

type Outcome = R<(Vec<Option<Vec<i64>>>, Stats)>;

/// Runs `s` in `n` parties and the dealer (party `n`); `corrupt` prepares party `i`
/// (a lie to tell) and wraps its transport. Returns each computing party's outcome.
fn run_with<W: Word, S: Script>(
    n: usize,
    s: &S,
    corrupt: impl Fn(PartyId, &mut Spdz2k<W>) + Sync,
    wrap: impl Fn(PartyId, Mesh) -> Box<dyn Transport> + Sync,
) -> Vec<Outcome> {
    let mut out = on_mesh(n + 1, "spdz2k", |i, mesh| {
        if i == n {
            let mut d = Spdz2kDealer::<W>::new(n).unwrap();
            d.attach(Box::new(mesh));
            d.begin_instruction(0);
            s.run(&mut d).unwrap();
            // A party that stopped early may have closed its link.
            let _ = d.end_run();
            return None;
        }
        let mut p = match Spdz2k::<W>::setup(wrap(i, mesh)) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        corrupt(i, &mut p);
        p.begin_instruction(0);
        let r = s.run(&mut p).and_then(|r| p.end_run().map(|()| r));
        if let Err(e) = &r {
            p.abort(&e.to_string());
        }
        Some(r.map(|r| (r, p.stats())))
    });
    out.pop();
    out.into_iter().map(Option::unwrap).collect()
}

fn run<W: Word, S: Script>(n: usize, s: &S) -> Vec<(Vec<Option<Vec<i64>>>, Stats)> {
    run_with::<W, S>(n, s, |_, _| {}, |_, m| Box::new(m))
        .into_iter()
        .map(|o| o.unwrap())
        .collect()
}

/// Runs `calls` on `x` (party 0's) and `y` (party `n − 1`'s) among `n` parties; checks
/// every result against the plaintext and the measured traffic against the costs.
fn check<W: Word>(n: usize, x: &[i64], y: &[i64], calls: Vec<Call>) {
    let s = Binary {
        x: x.to_vec(),
        y: y.to_vec(),
        to: 1,
        op: |_| calls.clone(),
    };
    let out = run::<W, _>(n, &s);
    let got = at(&out, 1);
    for (call, g) in calls.iter().zip(&got) {
        assert_eq!(
            g,
            &call.clear(x, y),
            "{call:?} in Z_2^{} among {n}",
            W::BITS
        );
    }
    let costs = Spdz2kCosts::new(n, W::BITS);
    let mut rounds: Rounds = costs.input(0, x.len());
    rounds.extend(costs.input(n - 1, y.len()));
    for (call, g) in calls.iter().zip(&got) {
        rounds.extend(call_cost(&costs, call, x.len()));
        rounds.extend(costs.reveal(g.len(), 1));
    }
    assert_traffic(&out, &rounds, &format!("{n} in Z_2^{}", W::BITS));
}

#[test]
fn products_match_clear_for_any_number_of_parties() {
    let x = values(24, -1000, 1000, 1);
    let y = values(24, -1000, 1000, 2);
    let d = MatDims {
        batch: 2,
        m: 3,
        k: 4,
        n: 1,
        a_batched: true,
        b_batched: true,
    };
    for n in [2, 3] {
        check::<u64>(n, &x, &y, vec![Call::Mul, Call::MatMul(d)]);
    }
    check::<u32>(2, &x, &y, vec![Call::Mul]);
}

#[test]
fn roundings_and_requantizations_match_clear() {
    let b = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let mut x = values(48, b.lo, b.hi, 4);
    x[2] = 12;
    x[3] = -12;
    x[5] = 5 << 9;
    x[6] = -(5 << 9);
    x[7] = b.lo;
    x[8] = b.hi;
    let n = x.len();
    let den: Vec<i64> = (0..n).map(|i| [8, 3, 7, 1 << 12, 24, 1][i % 6]).collect();
    let num: Vec<i64> = (0..n).map(|i| [1, 5, -3, 77, 1, -2][i % 6]).collect();
    let [pow2, general, tie] = requants(n);
    let calls = vec![
        Call::Rescale(num, den, b),
        Call::Requant(pow2, b),
        Call::Requant(general, b),
        Call::Requant(tie, b),
    ];
    check::<u64>(2, &x, &x, calls.clone());
    check::<u32>(3, &x, &x, calls);
}

#[test]
fn comparisons_and_lookups_match_clear() {
    let b = Bounds { lo: -300, hi: 300 };
    let mut x = values(40, b.lo, b.hi, 5);
    let y = values(40, b.lo, b.hi, 6);
    x[1] = x[6];
    x[8] = 300;
    x[15] = 300;
    x[16] = -300;
    let calls = vec![
        Call::Clamp(-20, 100, b),
        Call::Clamp(0, 1000, b),
        Call::Max(b),
        Call::Argmax(8, false, b),
        Call::Argmax(8, true, b),
        Call::Argmax(5, false, b),
        Call::Lookup((0..601).map(|i| (i * 37) % 91 - 45).collect(), -300),
    ];
    check::<u64>(2, &x, &y, calls.clone());
    check::<u32>(3, &x, &y, calls);
}

/// Calls that open more than a ledger holds before a reveal: the parties check on the
/// way ([`check::CHECK_EVERY`] is 64 in tests), inside a call and between calls, and the
/// costs, which carry the unchecked count from call to call, count every check.
#[test]
fn a_full_ledger_is_checked_between_and_inside_calls_and_costed() {
    let s = Chain::past_a_check();
    for n in [2, 3] {
        let out = run::<u64, _>(n, &s);
        assert_eq!(at(&out, 1), vec![s.clear()], "among {n}");
        let (carried, alone) = s.costs(n, || Box::new(Spdz2kCosts::new(n, 64)));
        assert!(
            carried.len() > alone.len(),
            "a check between calls among {n}"
        );
        assert_traffic(&out, &carried, &n.to_string());
    }
}

#[test]
fn a_ring_without_mac_headroom_is_refused() {
    let costs = Spdz2kCosts::new(2, 128);
    assert!(costs.clamp(4, 0, 10, Bounds { lo: 0, hi: 20 }).is_err());
}

/// One multiplication of two secrets, revealed to party 0.
fn product_script() -> Binary<impl Fn(usize) -> Vec<Call> + Sync> {
    Binary {
        x: values(16, -1000, 1000, 8),
        y: values(16, -1000, 1000, 9),
        to: 0,
        op: |_| {
            vec![
                Call::Mul,
                Call::Max(Bounds {
                    lo: -1000,
                    hi: 1000,
                }),
            ]
        },
    }
}

/// Every honest party failed with a check error, and no party got an output.
fn assert_caught(out: &[Outcome], liar: PartyId, what: &str) {
    for (i, o) in out.iter().enumerate() {
        match o {
            Ok((r, _)) => panic!("party {i} finished despite party {liar}'s lie ({what}): {r:?}"),
            Err(e) if i != liar => assert!(
                matches!(e, ProtocolError::Cheat { .. }),
                "party {i}: {e} ({what})"
            ),
            Err(_) => {}
        }
    }
}

#[test]
fn a_consistent_lie_about_an_opened_share_fails_the_mac_check() {
    // The liar changes its share of one opening and its own view with it: the
    // transcripts agree, only the MACs can tell. Opened group 0 is the product's, later
    // ones the comparison's (whose bits are read from the low bit). A lie in the top bit
    // of the ring (2^63) is the one a check of the low bits alone would miss half the time.
    let cases = [
        (2, 1, 0, 1),
        (3, 0, 1, 1 << 63),
        (3, 2, 3, 1),
        (2, 0, 2, 1 << 63),
        (2, 1, 0, 1 << 63),
    ];
    for (n, liar, opening, delta) in cases {
        let s = product_script();
        let out = run_with::<u64, _>(
            n,
            &s,
            |i, p| {
                if i == liar {
                    p.tamper_open = Some((opening, delta));
                }
            },
            |_, m| Box::new(m),
        );
        assert_caught(&out, liar, &format!("opening {opening} among {n}"));
        for o in out.iter().filter_map(|o| o.as_ref().err()) {
            if matches!(o, ProtocolError::Cheat { .. }) {
                assert!(o.to_string().contains("MAC check"), "{o}");
            }
        }
    }
}

/// A transport that flips one bit of every message its party sends in exchange `at`.
struct Flip {
    inner: Mesh,
    at: usize,
    calls: usize,
}

impl Transport for Flip {
    fn party(&self) -> PartyId {
        self.inner.party()
    }
    fn parties(&self) -> usize {
        self.inner.parties()
    }
    fn exchange(
        &mut self,
        mut out: Vec<(PartyId, Vec<u8>)>,
        expect: &[PartyId],
    ) -> Result<Vec<(PartyId, Vec<u8>)>, NetError> {
        if self.calls == self.at {
            for (_, m) in out.iter_mut() {
                if let Some(b) = m.first_mut() {
                    *b ^= 1;
                }
            }
        }
        self.calls += 1;
        self.inner.exchange(out, expect)
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
    fn abort(&mut self, reason: &str) {
        self.inner.abort(reason)
    }
}

#[test]
fn an_altered_message_on_the_wire_is_caught_before_any_output() {
    // Exchanges of a party: the dealer's message, the coin commitment, two inputs, the
    // product's opening, then the check before the first reveal (4 rounds).
    let s = product_script();
    for (n, liar, at) in [(2, 0, 4), (3, 1, 4), (3, 1, 5), (3, 2, 8), (2, 1, 6)] {
        let out = run_with::<u64, _>(
            n,
            &s,
            |_, _| {},
            |i, m| {
                if i == liar {
                    Box::new(Flip {
                        inner: m,
                        at,
                        calls: 0,
                    })
                } else {
                    Box::new(m)
                }
            },
        );
        assert_caught(&out, liar, &format!("exchange {at} among {n}"));
    }
}

/// `spdz2k`'s selection and lookup (`semi2k`'s tables with authenticated bits, a dealt
/// one-hot vector) against the generic ones over its gate set: the same results, bit for
/// bit, never more rounds or bytes; the generic ones' traffic is what their counting
/// dealer records, checks included.
#[test]
fn the_selection_and_lookup_match_the_generic_ones_and_cost_no_more() {
    use crate::func::gates::Generic;
    let (x, y, calls) = crate::testutil::generic_cases(24, 21);
    for n in [2, 3] {
        for call in &calls {
            let s = crate::testutil::one_call(&x, &y, call);
            let own = run::<u64, _>(n, &s);
            let mut generic = on_mesh(n + 1, "spdz2k", |i, mesh| {
                if i == n {
                    let mut d = Generic(Spdz2kDealer::<u64>::new(n).unwrap());
                    d.0.attach(Box::new(mesh));
                    d.begin_instruction(0);
                    s.run(&mut d).unwrap();
                    // A party that stopped early may have closed its link.
                    let _ = d.0.end_run();
                    return None;
                }
                let mut p = Generic(Spdz2k::<u64>::setup(Box::new(mesh)).unwrap());
                p.begin_instruction(0);
                let r = s.run(&mut p).unwrap();
                p.end_run().unwrap();
                Some((r, p.0.stats()))
            });
            generic.pop();
            let generic: Vec<_> = generic.into_iter().map(Option::unwrap).collect();
            let mut counting = Generic(Spdz2kDealer::<u64>::counting(n));
            s.run(&mut counting).unwrap();
            let counted = crate::cost::per_party(&counting.0.take_rounds(), n);
            let what = format!("{call:?} among {n}");
            crate::testutil::assert_agrees(&own, &generic, call, &x, &y, &what);
            for i in 0..n {
                let (o, g) = (own[i].1, generic[i].1);
                assert!(
                    o.rounds <= g.rounds && o.bytes_sent <= g.bytes_sent,
                    "party {i}: {o:?} against the generic {g:?}, {what}"
                );
                assert_eq!(
                    (g.rounds, g.bytes_sent),
                    (counted[i].rounds, counted[i].bytes_sent),
                    "party {i}, {what}"
                );
            }
        }
    }
}
