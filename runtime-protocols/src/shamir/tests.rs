//! Every `shamir` primitive against the plaintext meaning, `n` parties over loopback TCP;
//! the cost formulas against the measured traffic; the view of `t` colluding parties.

use super::*;
use crate::cost::Ask as _;
use crate::cost::Rounds;
use crate::net::Mesh;
use crate::testutil::{
    assert_traffic, assert_views_independent, at, logged, logs, on_mesh, recording, values,
    view_script, Binary, Call, CoalitionCoins, Script,
};
use crate::TruncMode;

fn run_with<S: Script>(
    n: usize,
    s: &S,
    wrap: impl Fn(PartyId, Mesh) -> Box<dyn Transport> + Sync,
) -> Vec<(Vec<Option<Vec<i64>>>, Stats)> {
    run_with_coins(n, s, wrap, &crate::coins::OsCoins)
}

/// [`run_with`], every key's seed from `coins`.
fn run_with_coins<S: Script>(
    n: usize,
    s: &S,
    wrap: impl Fn(PartyId, Mesh) -> Box<dyn Transport> + Sync,
    coins: &dyn crate::coins::Coins,
) -> Vec<(Vec<Option<Vec<i64>>>, Stats)> {
    on_mesh(n, "shamir", |i, mesh| {
        let mut p = Shamir::setup_with_coins(wrap(i, mesh), coins).unwrap();
        p.begin_instruction(0);
        let r = s.run(&mut p).unwrap();
        (r, p.stats())
    })
}

fn call_cost(c: &ShamirCosts, call: &Call, len: usize) -> Rounds {
    let e = TruncMode::Exact;
    match call {
        Call::Mul => c.mul(len),
        Call::MatMul(d) => c.matmul(*d),
        Call::Rescale(num, den, b) => c.rescale(num, den, *b, e).unwrap(),
        Call::Requant(q, b) => c.requantize(q, *b, e).unwrap(),
        Call::Clamp(lo, hi, b) => c.clamp(len, *lo, *hi, *b).unwrap(),
        Call::Max(b) => c.max(len, *b).unwrap(),
        Call::Argmax(row, last, b) => c.argmax(len, *row, *last, *b).unwrap(),
        Call::Lookup(t, _) => c.lookup(len, t).unwrap(),
    }
}

/// Runs `calls` on `x` (party 0's) and `y` (party `n − 1`'s) among `n` parties; checks
/// every result against the plaintext and the traffic against the cost formulas.
fn check(n: usize, x: &[i64], y: &[i64], calls: Vec<Call>) {
    let s = Binary {
        x: x.to_vec(),
        y: y.to_vec(),
        to: 1,
        op: |_| calls.clone(),
    };
    let out = run_with(n, &s, |_, mesh| Box::new(mesh));
    let got = at(&out, 1);
    for (call, g) in calls.iter().zip(&got) {
        assert_eq!(g, &call.clear(x, y), "{call:?} among {n}");
    }
    let costs = ShamirCosts::new(n);
    let mut rounds: Rounds = costs.input(0, x.len());
    rounds.extend(costs.input(n - 1, y.len()));
    for (call, g) in calls.iter().zip(&got) {
        rounds.extend(call_cost(&costs, call, x.len()));
        rounds.extend(costs.reveal(g.len(), 1));
    }
    assert_traffic(&out, &rounds, &n.to_string());
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
    for n in [3, 4, 5, 7, 10] {
        check(n, &x, &y, vec![Call::Mul, Call::MatMul(d)]);
    }
}

#[test]
fn roundings_match_clear_including_ties_and_every_divisor_kind() {
    let b = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let mut x = values(96, b.lo, b.hi, 4);
    x[2] = 12;
    x[3] = -12;
    x[4] = 40;
    x[5] = 5 << 9;
    x[6] = -(5 << 9);
    let n = x.len();
    let den: Vec<i64> = (0..n).map(|i| [8, 3, 7, 1 << 12, 24, 1][i % 6]).collect();
    let num: Vec<i64> = (0..n).map(|i| [1, 5, -3, 77, 1, -2][i % 6]).collect();
    let [pow2, general, tie] = crate::testutil::requants(n);
    let calls = vec![
        Call::Rescale(num, den, b),
        Call::Requant(pow2, b),
        Call::Requant(general, b),
        Call::Requant(tie, b),
    ];
    for parties in [3, 4, 5] {
        check(parties, &x, &x, calls.clone());
    }
}

#[test]
fn wide_values_over_large_odd_and_even_divisors_match_clear() {
    // QDQ additions: ~38-bit values over 25-bit divisors, too wide for one selection.
    let b = Bounds {
        lo: -(1 << 38),
        hi: 1 << 38,
    };
    let mut x = values(24, b.lo, b.hi, 9);
    // Exact ties of the even divisor (x/d = k + 1/2) and near-misses.
    x[2] = 29_274_098 * 7 + 14_637_049;
    x[3] = -(29_274_098 * 7 + 14_637_049);
    x[4] = x[2] - 1;
    let n = x.len();
    let q = Requant {
        num: vec![1; n],
        den: (0..n)
            .map(|i| [29_274_098, 14_637_049, 455_463_673][i % 3])
            .collect(),
        zp: vec![37; n],
        lo: -128,
        hi: 127,
    };
    let sums = Requant {
        lo: -100_000,
        hi: 100_000,
        ..q.clone()
    };
    let costs = ShamirCosts::new(3);
    assert!(costs.requantize(&q, b, TruncMode::Exact).is_ok());
    for parties in [3, 5] {
        check(
            parties,
            &x,
            &x,
            vec![Call::Requant(q.clone(), b), Call::Requant(sums.clone(), b)],
        );
    }
}

/// An unfused rescale of a 33-bit accumulator by a 21-bit multiplier over a power of two
/// (what `-O0` leaves of a convolution with an unclamped secret bias): 54-bit values, more
/// than the 64-bit statistical draw can cover above the mask, so the mask takes more bits.
#[test]
fn wide_values_over_powers_of_two_match_clear() {
    let b = Bounds {
        lo: -(1 << 33),
        hi: 1 << 33,
    };
    let mut x = values(16, b.lo, b.hi, 11);
    // Odd multipliers over 2^16: `x = ±2^15` are ties, `2^15 + 1` a near-miss.
    x[2] = 1 << 15;
    x[3] = -(1 << 15);
    x[4] = (1 << 15) + 1;
    let n = x.len();
    let num: Vec<i64> = (0..n).map(|i| (1 << 20) + 1 + 24_690 * i as i64).collect();
    let den = vec![1i64 << 16; n];
    let costs = ShamirCosts::new(3);
    assert!(costs.rescale(&num, &den, b, TruncMode::Exact).is_ok());
    for parties in [3, 4] {
        check(
            parties,
            &x,
            &x,
            vec![Call::Rescale(num.clone(), den.clone(), b)],
        );
    }
}

#[test]
fn comparisons_and_lookups_match_clear() {
    let b = Bounds { lo: -300, hi: 300 };
    let mut x = values(40, b.lo, b.hi, 5);
    let y = values(40, b.lo, b.hi, 6);
    x[1] = x[6];
    x[8] = 300;
    x[15] = 300;
    let calls = vec![
        Call::Clamp(-20, 100, b),
        Call::Clamp(0, 1000, b),
        Call::Max(b),
        Call::Argmax(8, false, b),
        Call::Argmax(8, true, b),
        Call::Argmax(5, false, b),
        Call::Argmax(1, false, b),
        Call::Lookup((0..601).map(|i| (i * 37) % 91 - 45).collect(), -300),
    ];
    for parties in [3, 5] {
        check(parties, &x, &y, calls.clone());
    }
    check(7, &x, &y, vec![Call::Max(b), Call::Argmax(10, false, b)]);
    let fives = vec![5; 30];
    check(3, &fives, &fives, vec![Call::Lookup(vec![9], 5)]);
}

#[test]
fn rounds_per_primitive_are_as_documented() {
    let (three, five) = (ShamirCosts::new(3), ShamirCosts::new(5));
    let b = Bounds { lo: -300, hi: 300 };
    // Max of ±600, an 11-bit comparison. Over the field (5 parties): 6 units of 2 bits,
    // 3 levels, plus bits, open, select. Boolean (3 parties): 11 units, 4 levels, plus
    // daBits (2), open, the borrow's opening, select.
    assert_eq!(call_cost(&five, &Call::Max(b), 8).len(), 3 + 3);
    assert_eq!(call_cost(&three, &Call::Max(b), 8).len(), 4 + 5);
    assert_eq!(three.mul(5).len(), 1);
    // A LeNet-like requantization: 20-bit accumulators, a 23-bit multiplier, 2^33; the
    // rounded value spans ±512 + 128.
    let q = Requant {
        num: vec![7_883_973; 4],
        den: vec![1 << 33; 4],
        zp: vec![-128; 4],
        lo: -128,
        hi: 127,
    };
    let acc = Bounds {
        lo: -(1 << 19),
        hi: 1 << 19,
    };
    // Over the field: round (bits, open, the parity and 17 chunks: 5 levels), then clamp
    // (bits, open, 6 chunks: 3 levels, select).
    let requant = Call::Requant(q, acc);
    assert_eq!(call_cost(&five, &requant, 4).len(), (2 + 5) + (3 + 3));
    // Boolean: round (daBits, open, the parity and 33 bits: 6 levels, borrow), then clamp
    // (daBits, open, 11 bits: 4 levels, borrow, select).
    assert_eq!(call_cost(&three, &requant, 4).len(), (4 + 6) + (5 + 4));
}

#[test]
fn too_wide_values_are_an_error_not_a_wrong_answer() {
    let costs = ShamirCosts::new(10);
    let wide = Bounds {
        lo: -(1 << 61),
        hi: 1 << 61,
    };
    let q = Requant {
        num: vec![1 << 30; 2],
        den: vec![3; 2],
        zp: vec![0; 2],
        lo: -100,
        hi: 100,
    };
    let e = costs.requantize(&q, wide, TruncMode::Exact).unwrap_err();
    assert!(e.to_string().contains("does not fit the field"), "{e}");
}

/// Privacy: what `t` colluding parties receive must not depend on party 0's input.
mod view {
    use super::*;

    fn views(n: usize, x: &[i64], coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        let seen = logs(n);
        run_with_coins(n, &view_script(x), recording(&seen), coins);
        logged(&seen)
    }

    #[test]
    fn views_of_t_parties_do_not_depend_on_the_secret_input() {
        let xa: Vec<i64> = vec![-100, -3, 0, 5, 99, 100, 17, -64];
        let xb: Vec<i64> = vec![100, 42, -77, 0, -1, 1, -100, 63];
        const RUNS: usize = 60;
        for n in [3, 5] {
            let t = (n - 1) / 2;
            // The coalitions of parties 1..=t and of the last t parties.
            for coalition in [(1..=t).collect::<Vec<_>>(), (n - t..n).collect()] {
                let joint = |v: Vec<Vec<u8>>| -> Vec<u8> {
                    coalition.iter().flat_map(|&p| v[p].clone()).collect()
                };
                // The coalition's own keys are the same in every run.
                let coins = CoalitionCoins {
                    coalition: coalition.clone(),
                };
                let va: Vec<Vec<u8>> = (0..RUNS).map(|_| joint(views(n, &xa, &coins))).collect();
                let vb: Vec<Vec<u8>> = (0..RUNS).map(|_| joint(views(n, &xb, &coins))).collect();
                assert_views_independent(
                    &va,
                    &vb,
                    &xa,
                    &xb,
                    &format!("parties {coalition:?} of {n}"),
                );
            }
        }
    }
}

#[test]
fn a_peer_sending_garbage_is_an_error_naming_it() {
    let bad = vec![0xffu8; ELEM];
    let e = Shamir::decode(2, &bad, 1).unwrap_err();
    assert!(e.to_string().contains("party 2"), "{e}");
    let e = Shamir::decode(1, &[0u8; 5], 1).unwrap_err();
    assert!(e.to_string().contains("party 1"), "{e}");
    // Packed bits of the boolean comparisons (three parties).
    let e = boolean::decode(2, &[0u8; 12], 2).unwrap_err();
    assert!(e.to_string().contains("party 2"), "{e}");
}

#[test]
fn dabits_agree_across_the_field_and_the_boolean_sharing() {
    const COUNT: usize = 301;
    let out = on_mesh(3, "shamir", |_, mesh| {
        let mut p = Shamir::setup(Box::new(mesh)).unwrap();
        p.begin_instruction(0);
        let d = dabits::dabits(&mut p, COUNT).unwrap();
        (d.fp, d.bits, p.stats())
    });
    let geo = Geometry::new(3);
    let mut seen = [0usize; 2];
    for j in 0..COUNT {
        let fp = geo.lambda_t[0] * out[0].0[j] + geo.lambda_t[1] * out[1].0[j];
        // Shares of parties 1 and 2 give the same value: one degree-1 polynomial.
        let pts = [point(1), point(2)];
        let l = geometry::lagrange_at(&pts, Fp::ZERO);
        assert_eq!(fp, l[0] * out[1].0[j] + l[1] * out[2].0[j], "bit {j}");
        let boolean: u64 = (0..3).map(|i| out[i].1.get(j).0).fold(0, |a, b| a ^ b);
        for i in 0..3 {
            // Party i's second component is party i + 1's first.
            assert_eq!(out[i].1.get(j).1, out[(i + 1) % 3].1.get(j).0);
        }
        assert!(fp == Fp::ZERO || fp == Fp::ONE, "bit {j} is {fp:?}");
        assert_eq!(fp, Fp::new(u128::from(boolean)), "bit {j}");
        seen[boolean as usize] += 1;
    }
    assert!(seen[0] > 100 && seen[1] > 100, "{seen:?}");
    let want = crate::cost::per_party(&dabits::pattern(COUNT), 3);
    for (i, (_, _, s)) in out.iter().enumerate() {
        assert_eq!(
            (s.rounds, s.bytes_sent),
            (2, want[i].bytes_sent),
            "party {i}"
        );
        // One element per bit, give or take one, and two frame headers.
        let elems = (s.bytes_sent - 2 * crate::net::FRAME_HEADER as u64) / ELEM as u64;
        assert!(elems.abs_diff(COUNT as u64) <= 2, "party {i}: {elems}");
    }
}

/// `shamir`'s selection against the generic one over its gate set (field bits): the
/// same results, bit for bit; the generic one's traffic is what its counter records.
/// With four or more parties the own construction (2-bit chunks whose one-hot products
/// ride on the opening) costs no more rounds or bytes. With three it compares over
/// replicated boolean shares, a bit per AND instead of a field element, for one more
/// round per selection that brings the borrows into the field: a third to a half of
/// the bytes for one or two rounds more (NOTES.md).
#[test]
fn the_selection_matches_the_generic_one() {
    use crate::func::gates::Generic;
    let (x, y, calls) = crate::testutil::generic_cases(40, 11);
    for n in [3, 4, 5] {
        for call in &calls {
            let s = crate::testutil::one_call(&x, &y, call);
            let own = run_with(n, &s, |_, mesh| Box::new(mesh));
            let generic = on_mesh(n, "shamir", |_, mesh| {
                let mut p = Generic(Shamir::setup(Box::new(mesh)).unwrap());
                p.begin_instruction(0);
                let r = s.run(&mut p).unwrap();
                (r, p.0.stats())
            });
            let counted = super::cost::counted_generic(n, |c| s.run(c).map(|_| ())).unwrap();
            let counted = crate::cost::per_party(&counted, n);
            let what = format!("{call:?} among {n}");
            crate::testutil::assert_agrees(&own, &generic, call, &x, &y, &what);
            for i in 0..n {
                let (o, g) = (own[i].1, generic[i].1);
                assert!(
                    o.bytes_sent <= g.bytes_sent,
                    "party {i}: {o:?}, {g:?}, {what}"
                );
                if n > 3 {
                    assert!(o.rounds <= g.rounds, "party {i}: {o:?}, {g:?}, {what}");
                }
                assert_eq!(
                    (g.rounds, g.bytes_sent),
                    (counted[i].rounds, counted[i].bytes_sent),
                    "party {i}, {what}"
                );
            }
        }
    }
}
