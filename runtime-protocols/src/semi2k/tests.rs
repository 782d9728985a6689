//! Every `semi2k` and `fss` primitive against the plaintext meaning, `n` parties and the
//! dealer over loopback TCP; the cost formulas against the measured traffic; a party's
//! view.

use super::*;
use crate::cost::Ask as _;
use crate::func::gates::Generic;
use crate::net::Mesh;
use crate::testutil::{
    assert_traffic, assert_views_independent, at, logged, logs, on_mesh, recording, requants,
    values, view_script, Binary, Call, CoalitionCoins, Script,
};
use crate::TruncMode;

/// Runs `s` in `n` parties and the dealer (party `n`); returns each computing party's
/// results and online traffic.
fn run<W: Word, S: Script>(g: Gates, n: usize, s: &S) -> Vec<(Vec<Option<Vec<i64>>>, Stats)> {
    run_with::<W, S>(g, n, s, |_, mesh| Box::new(mesh))
}

fn run_with<W: Word, S: Script>(
    g: Gates,
    n: usize,
    s: &S,
    wrap: impl Fn(PartyId, Mesh) -> Box<dyn Transport> + Sync,
) -> Vec<(Vec<Option<Vec<i64>>>, Stats)> {
    run_with_coins::<W, S>(g, n, s, wrap, &crate::coins::OsCoins)
}

/// [`run_with`], every party's and the dealer's seeds from `coins`.
fn run_with_coins<W: Word, S: Script>(
    g: Gates,
    n: usize,
    s: &S,
    wrap: impl Fn(PartyId, Mesh) -> Box<dyn Transport> + Sync,
    coins: &dyn crate::coins::Coins,
) -> Vec<(Vec<Option<Vec<i64>>>, Stats)> {
    let mut out = on_mesh(n + 1, g.name(), |i, mesh| {
        if i == n {
            let mut d = Dealer::<W>::with_coins(n, g, coins).unwrap();
            d.attach(Box::new(mesh));
            d.begin_instruction(0);
            s.run(&mut d).unwrap();
            d.end_run().unwrap();
            return None;
        }
        let mut p = Semi2k::<W>::setup_with_coins(wrap(i, mesh), g, coins).unwrap();
        p.begin_instruction(0);
        let r = s.run(&mut p).unwrap();
        // As the VM does: the run's last chunks are read even where nothing in them is
        // this party's.
        p.end_run().unwrap();
        Some((r, p.stats()))
    });
    out.pop();
    out.into_iter().map(Option::unwrap).collect()
}

/// `semi2k`'s [`check_with`].
fn check<W: Word>(n: usize, x: &[i64], y: &[i64], calls: Vec<Call>) {
    check_with::<W>(Gates::Beaver, n, x, y, calls)
}

/// Runs `calls` on `x`, `y` among `n` parties in the ring of `W` with `gates`; checks every
/// result against the plaintext and the measured traffic against the cost formulas.
fn check_with<W: Word>(gates: Gates, n: usize, x: &[i64], y: &[i64], calls: Vec<Call>) {
    let s = Binary {
        x: x.to_vec(),
        y: y.to_vec(),
        to: 1,
        op: |_| calls.clone(),
    };
    let out = run::<W, _>(gates, n, &s);
    let got = at(&out, 1);
    for (call, g) in calls.iter().zip(&got) {
        assert_eq!(
            g,
            &call.clear(x, y),
            "{call:?} in Z_2^{} among {n} ({gates:?})",
            W::BITS
        );
    }
    // Static figures: every call's rounds, then the reveal of its result.
    let costs = Semi2kCosts {
        parties: n,
        ring_bits: W::BITS,
        gates,
    };
    let mut rounds: Rounds = Vec::new();
    for (call, g) in calls.iter().zip(&got) {
        rounds.extend(call_cost(&costs, call, x.len()));
        rounds.extend(costs.reveal(g.len(), 1));
    }
    assert_traffic(&out, &rounds, &format!("{n} in Z_2^{}", W::BITS));
}

use crate::cost::Rounds;

fn call_cost(c: &Semi2kCosts, call: &Call, len: usize) -> Rounds {
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
    let shared_right = MatDims {
        batch: 2,
        m: 3,
        k: 4,
        n: 2,
        a_batched: true,
        b_batched: false,
    };
    for n in [2, 3, 5] {
        check::<u64>(n, &x, &y, vec![Call::Mul, Call::MatMul(d)]);
    }
    let y8 = y[..8].to_vec();
    check::<u32>(2, &x, &y8, vec![Call::MatMul(shared_right)]);
}

#[test]
fn exact_rescale_matches_clear_including_ties_and_odd_divisors() {
    let b = Bounds {
        lo: -5000,
        hi: 5000,
    };
    let mut x = values(64, b.lo, b.hi, 3);
    // Exact ties for the even divisors.
    x[2] = 12;
    x[3] = -12;
    x[4] = 40;
    let n = x.len();
    let den: Vec<i64> = (0..n).map(|i| [8, 3, 7, 1 << 12, 24, 1][i % 6]).collect();
    let num: Vec<i64> = (0..n).map(|i| [1, 5, -3, 77, 1, -2][i % 6]).collect();
    for parties in [2, 3] {
        check::<u64>(
            parties,
            &x,
            &x,
            vec![Call::Rescale(num.clone(), den.clone(), b)],
        );
    }
    check::<u32>(3, &x, &x, vec![Call::Rescale(num, den, b)]);
}

#[test]
fn requantization_matches_clear_for_every_divisor_kind() {
    let b = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let mut x = values(96, b.lo, b.hi, 4);
    // Ties of 2^10 whose floor is odd (2.5 → 2, −2.5 → −2).
    x[5] = 5 << 9;
    x[6] = -(5 << 9);
    let n = x.len();
    let [pow2, general, tie] = requants(n);
    for parties in [2, 3, 5] {
        check::<u64>(
            parties,
            &x,
            &x,
            vec![
                Call::Requant(pow2.clone(), b),
                Call::Requant(general.clone(), b),
                Call::Requant(tie.clone(), b),
            ],
        );
    }
    check::<u32>(
        2,
        &x,
        &x,
        vec![Call::Requant(pow2, b), Call::Requant(general, b)],
    );
}

#[test]
fn comparisons_match_clear() {
    let b = Bounds { lo: -300, hi: 300 };
    let mut x = values(40, b.lo, b.hi, 5);
    let y = values(40, b.lo, b.hi, 6);
    // Ties for argmax, within a row of 8 and at its ends.
    x[1] = x[6];
    x[8] = 300;
    x[15] = 300;
    for parties in [2, 3] {
        check::<u64>(
            parties,
            &x,
            &y,
            vec![
                Call::Clamp(-20, 100, b),
                Call::Clamp(0, 1000, b),
                Call::Max(b),
                Call::Argmax(8, false, b),
                Call::Argmax(8, true, b),
                Call::Argmax(5, false, b),
                Call::Argmax(1, false, b),
            ],
        );
    }
    check::<u32>(5, &x, &y, vec![Call::Max(b), Call::Argmax(10, false, b)]);
}

/// Every primitive under `fss`: two parties, DCF keys.
#[test]
fn fss_gates_match_clear() {
    let b = Bounds { lo: -300, hi: 300 };
    let mut x = values(40, b.lo, b.hi, 5);
    let y = values(40, b.lo, b.hi, 6);
    x[1] = x[6];
    x[8] = 300;
    x[15] = 300;
    x[16] = -300;
    let comparisons = vec![
        Call::Clamp(-20, 100, b),
        Call::Clamp(0, 1000, b),
        Call::Clamp(-300, 300, b),
        Call::Max(b),
        Call::Argmax(8, false, b),
        Call::Argmax(8, true, b),
        Call::Argmax(5, false, b),
        Call::Mul,
        Call::Lookup((0..601).map(|i| (i * 37) % 91 - 45).collect(), -300),
    ];
    check_with::<u64>(Gates::Fss, 2, &x, &y, comparisons.clone());
    check_with::<u32>(Gates::Fss, 2, &x, &y, comparisons);

    let wide = Bounds {
        lo: -(1 << 20),
        hi: 1 << 20,
    };
    let mut x = values(96, wide.lo, wide.hi, 4);
    x[2] = 12;
    x[3] = -12;
    x[4] = 40;
    x[5] = 5 << 9;
    x[6] = -(5 << 9);
    x[7] = wide.lo;
    x[8] = wide.hi;
    let n = x.len();
    let den: Vec<i64> = (0..n).map(|i| [8, 3, 7, 1 << 12, 24, 1][i % 6]).collect();
    let num: Vec<i64> = (0..n).map(|i| [1, 5, -3, 77, 1, -2][i % 6]).collect();
    let [pow2, general, tie] = requants(n);
    let roundings = vec![
        Call::Rescale(num, den, wide),
        Call::Requant(pow2, wide),
        Call::Requant(general, wide),
        Call::Requant(tie, wide),
    ];
    check_with::<u64>(Gates::Fss, 2, &x, &x, roundings.clone());
    check_with::<u32>(Gates::Fss, 2, &x, &x, roundings.clone());

    // One opening per comparison or rounding; two for a requantization that also clamps.
    let costs = Semi2kCosts {
        parties: 2,
        ring_bits: 64,
        gates: Gates::Fss,
    };
    let rounds = |call: &Call, len: usize| call_cost(&costs, call, len).len();
    assert_eq!(rounds(&Call::Clamp(-20, 100, b), 40), 1);
    assert_eq!(rounds(&Call::Max(b), 40), 1);
    assert_eq!(rounds(&Call::Argmax(8, false, b), 40), 4);
    let [rescale, pow2, _, tie] = &roundings[..] else {
        unreachable!()
    };
    assert_eq!(rounds(rescale, n), 1);
    assert_eq!(rounds(pow2, n), 2);
    assert_eq!(rounds(tie, n), 2);
}

/// Each computing party's results and online traffic.
type Outcomes = Vec<(Vec<Option<Vec<i64>>>, Stats)>;

/// Runs `s` with the generic selection ([`Generic`]) in place of the protocol's own, in
/// the parties and the dealer; returns what [`run`] does, and the rounds a counting dealer
/// records for the same script.
fn run_generic<W: Word, S: Script>(g: Gates, n: usize, s: &S) -> (Outcomes, Rounds) {
    let mut out = on_mesh(n + 1, g.name(), |i, mesh| {
        if i == n {
            let mut d = Generic(Dealer::<W>::new(n, g).unwrap());
            d.0.attach(Box::new(mesh));
            d.begin_instruction(0);
            s.run(&mut d).unwrap();
            d.0.end_run().unwrap();
            return None;
        }
        let mut p = Generic(Semi2k::<W>::setup_with(Box::new(mesh), g).unwrap());
        p.begin_instruction(0);
        let r = s.run(&mut p).unwrap();
        p.end_run().unwrap();
        Some((r, p.0.stats()))
    });
    out.pop();
    let mut counting = Generic(Dealer::<W>::counting(n, g));
    s.run(&mut counting).unwrap();
    let rounds = counting.0.take_rounds();
    (out.into_iter().map(Option::unwrap).collect(), rounds)
}

/// The selections and lookups of `semi2k` (tables and a tree of Beaver ANDs, a dealt
/// one-hot vector) and `fss` (DCF keys) against the generic ones over their gate set: the
/// same results, bit for bit, and never more rounds or bytes; the generic ones' traffic is
/// what their counting dealer records.
#[test]
fn the_selections_match_the_generic_one_and_cost_no_more() {
    let (x, y, calls) = crate::testutil::generic_cases(40, 11);
    for (gates, n) in [(Gates::Beaver, 2), (Gates::Beaver, 3), (Gates::Fss, 2)] {
        for call in &calls {
            let s = crate::testutil::one_call(&x, &y, call);
            let own = run::<u64, _>(gates, n, &s);
            let (generic, counted) = run_generic::<u64, _>(gates, n, &s);
            let what = format!("{call:?} under {gates:?} among {n}");
            crate::testutil::assert_agrees(&own, &generic, call, &x, &y, &what);
            let counted = crate::cost::per_party(&counted, n);
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

#[test]
fn lookups_match_clear() {
    let x = values(30, -100, 100, 7);
    let table: Vec<i64> = (0..201).map(|i| (i * 37) % 91 - 45).collect();
    for parties in [2, 4] {
        check::<u64>(parties, &x, &x, vec![Call::Lookup(table.clone(), -100)]);
    }
    let zeros = vec![5; 30];
    check::<u32>(2, &zeros, &zeros, vec![Call::Lookup(vec![9], 5)]);
}

#[test]
fn too_wide_values_are_an_error_not_a_wrong_answer() {
    let costs = Semi2kCosts {
        parties: 2,
        ring_bits: 32,
        gates: Gates::Beaver,
    };
    let wide = Bounds {
        lo: -(1 << 40),
        hi: 1 << 40,
    };
    assert!(costs.clamp(4, 0, 10, wide).is_err());
    let costs64 = Semi2kCosts {
        parties: 2,
        ring_bits: 64,
        gates: Gates::Fss,
    };
    assert!(costs64.clamp(4, 0, 10, wide).is_ok());
}

/// Privacy: what a party receives must not depend on secrets it is not entitled to.
mod view {
    use super::*;

    /// What each party received (the dealer's messages included) in one run of the view
    /// script on `x`.
    fn views(g: Gates, n: usize, x: &[i64], coins: &CoalitionCoins) -> Vec<Vec<u8>> {
        let seen = logs(n);
        run_with_coins::<u32, _>(g, n, &view_script(x), recording(&seen), coins);
        logged(&seen)
    }

    /// The coalition of every party but the input's owner (party 0, which also receives
    /// the outputs), its own keys fixed: what it receives must not depend on the input.
    #[test]
    fn views_of_n_minus_1_parties_do_not_depend_on_the_secret_input() {
        let xa: Vec<i64> = vec![-100, -3, 0, 5, 99, 100, 17, -64];
        let xb: Vec<i64> = vec![100, 42, -77, 0, -1, 1, -100, 63];
        const RUNS: usize = 100;
        for (g, n) in [(Gates::Beaver, 2), (Gates::Beaver, 3), (Gates::Fss, 2)] {
            let coalition: Vec<PartyId> = (1..n).collect();
            let coins = CoalitionCoins {
                coalition: coalition.clone(),
            };
            let joint = |v: Vec<Vec<u8>>| -> Vec<u8> {
                coalition.iter().flat_map(|&p| v[p].clone()).collect()
            };
            let va: Vec<Vec<u8>> = (0..RUNS).map(|_| joint(views(g, n, &xa, &coins))).collect();
            let vb: Vec<Vec<u8>> = (0..RUNS).map(|_| joint(views(g, n, &xb, &coins))).collect();
            assert_views_independent(
                &va,
                &vb,
                &xa,
                &xb,
                &format!("parties {coalition:?} of {n} ({g:?})"),
            );
        }
    }
}

#[test]
fn malformed_preprocessing_is_an_error_naming_the_dealer() {
    use super::chunks::{Chunk, Records};
    let mut r = Records::default();
    r.append(3, |o| o.extend([1, 2, 3]));
    r.append(3, |o| o.extend([4, 5]));
    r.append(9, |o| o.extend([6; 17]));
    let good = r.finish(false, 12).unwrap();
    let chunk = Chunk::decode(good.clone(), 2, 2).unwrap();
    assert_eq!(chunk.through, Some(12));
    let got: Vec<(usize, Vec<u8>)> = chunk
        .records
        .iter()
        .map(|(i, r)| (*i, r.bytes().to_vec()))
        .collect();
    assert_eq!(got, vec![(3, vec![1, 2, 3, 4, 5]), (9, vec![6; 17])]);
    // Every truncation is an error naming the dealer.
    for cut in 0..good.len() {
        let Err(e) = Chunk::decode(good[..cut].to_vec(), 2, 2) else {
            // Cut between records: a shorter chunk, still well formed.
            assert!(cut == 8 || cut == 8 + 8 + 5, "cut at {cut} parsed");
            continue;
        };
        assert!(e.to_string().contains("party 2"), "{e}");
    }
    // Byte changes and noise parse or fail; they never panic.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let mut bad = good.clone();
        let at = (s as usize) % bad.len();
        bad[at] = (s >> 32) as u8;
        let _ = Chunk::decode(bad, 2, 2);
        let len = (s >> 40) as usize % 64;
        let noise: Vec<u8> = (0..len).map(|i| (s >> (i % 56)) as u8).collect();
        let _ = Chunk::decode(noise, 0, 2);
    }
    // An instruction twice, one the last chunk covered, or one past the chunk's end is
    // refused.
    let twice = [good.clone(), good[8..16].to_vec(), vec![0; 3]].concat();
    let e = Chunk::decode(twice, 0, 2).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = Chunk::decode(good.clone(), 4, 2).unwrap_err();
    assert!(e.to_string().contains("instruction 3"), "{e}");
    let mut short = Records::default();
    short.append(13, |o| o.push(1));
    let e = Chunk::decode(short.finish(false, 12).unwrap(), 0, 2).unwrap_err();
    assert!(e.to_string().contains("ends before it"), "{e}");
    // The instruction a chunk reaches may begin in it, and go on in the next.
    let mut begun = Records::default();
    begun.append(12, |o| o.push(1));
    let first = Chunk::decode(begun.finish(false, 12).unwrap(), 0, 2).unwrap();
    let mut more = Records::default();
    more.append(12, |o| o.push(2));
    let next = Chunk::decode(more.finish(false, 12).unwrap(), 12, 2).unwrap();
    assert_eq!(
        (
            first.records[0].0,
            next.records[0].0,
            next.records[0].1.bytes()
        ),
        (12, 12, &[2u8][..])
    );
    // The run's last chunk reaches every instruction.
    let mut last = Records::default();
    last.append(4000, |o| o.push(1));
    assert_eq!(
        Chunk::decode(last.finish(true, 0).unwrap(), 13, 2)
            .unwrap()
            .through,
        None
    );
}

/// The material of several instructions goes out in many chunks (1 KiB under test), some
/// instructions' records spanning two, and the parties begin the instructions in another
/// order than the dealer walked them: the last party reads ahead and keeps what it has
/// not begun, and reads the rest of a record when the instruction takes it. Results
/// equal the products, the dealer's measured bytes equal the counting dealer's, and the
/// chunks are not online traffic.
#[test]
fn material_streams_in_chunks_read_in_any_order() {
    const LEN: usize = 300;
    let x = values(LEN, -1000, 1000, 3);
    let y = values(LEN, -1000, 1000, 4);
    let with_material = |k: u64| k % 3 != 2;
    /// Instruction `k` of a run: inputs, and a product revealed to party 1 where `k` has
    /// material; where `k % 3 == 0`, then the product times `x` (a second block).
    fn walk<P: Core>(p: &mut P, order: &[u64], x: &[i64], y: &[i64]) -> Vec<Option<Vec<i64>>> {
        let mine = p.party() == 0;
        order
            .iter()
            .map(|&k| {
                p.begin_instruction(k);
                if k % 3 == 2 {
                    return None;
                }
                let a = p.input(0, mine.then_some(x), x.len()).unwrap();
                let b = p.input(0, mine.then_some(y), y.len()).unwrap();
                let c = p.mul(&a, &b).unwrap();
                let mut r = p.reveal(&c, 1).unwrap();
                if k % 3 == 0 {
                    let e = p.mul(&c, &a).unwrap();
                    let more = p.reveal(&e, 1).unwrap();
                    if let (Some(r), Some(more)) = (r.as_mut(), more) {
                        r.extend(more);
                    }
                }
                r
            })
            .collect()
    }
    let walked: Vec<u64> = (0..12).collect();
    let shuffled = [0, 3, 1, 2, 7, 4, 5, 6, 11, 10, 8, 9];
    for gates in [Gates::Beaver, Gates::Fss] {
        let mut out = on_mesh(3, gates.name(), |i, mesh| {
            if i == 2 {
                let mut d = Dealer::<u64>::new(2, gates).unwrap();
                d.attach(Box::new(mesh));
                walk(&mut d, &walked, &x, &y);
                d.end_run().unwrap();
                return (Vec::new(), d.session_stats());
            }
            let mut p = Semi2k::<u64>::setup_with(Box::new(mesh), gates).unwrap();
            let r = walk(&mut p, &shuffled, &x, &y);
            p.end_run().unwrap();
            (r, p.stats())
        });
        let (_, dealt) = out.pop().unwrap();
        let mut counting = Dealer::<u64>::counting(2, gates);
        walk(&mut counting, &walked, &x, &y);
        let predicted: u64 = counting.bytes_per_party().iter().sum();
        assert_eq!(dealt.bytes_sent, predicted, "{gates:?}");
        let products: Vec<i64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        let twice: Vec<i64> = products
            .iter()
            .chain(
                &products
                    .iter()
                    .zip(&x)
                    .map(|(p, a)| p * a)
                    .collect::<Vec<_>>(),
            )
            .copied()
            .collect();
        for (k, r) in shuffled.iter().zip(&out[1].0) {
            let want = if k % 3 == 0 { &twice } else { &products };
            assert_eq!(r.as_ref(), with_material(*k).then_some(want), "{k}");
        }
        // Material for 12 blocks of 7,200 bytes at least: 12 chunks or more.
        assert!(dealt.rounds >= 13, "{dealt:?}");
        // Online: a product and an opening per block.
        for (_, s) in &out {
            assert_eq!(s.rounds, 24, "{gates:?}: {s:?}");
        }
    }
}
