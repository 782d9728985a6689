//! `cargo bench --bench dzkp`: the distributed inner-product proof over GF(2^64)
//! (`qmpc_protocols::dzkp::ip`) at the relation counts of `mal-rep3` on LeNet (about 2^21
//! at batch 1 and 2^26 at batch 64, from rep3's bits on the wire): the prover's and one
//! verifier's time, rounds and proof bytes, per compression factor `k`. Prints a Markdown
//! table; docs/protocols.md quotes it. `QMPC_DZKP_MAX_LOG` (default 26) caps the largest
//! length.

use qmpc_protocols::dzkp::gf64::Gf64;
use qmpc_protocols::dzkp::ip::{accepts, challenge, factor, message_len, Prover, Source, Verifier};
use qmpc_protocols::stream::Stream;
use std::time::Instant;

fn words(s: &mut Stream, n: usize) -> Vec<Gf64> {
    Gf64::random(s, n)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let max_log: u32 = std::env::var("QMPC_DZKP_MAX_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(26);
    println!("| relations | k | prover | verifier (each) | rounds | proof bytes to V2 |");
    println!("|---|---|---|---|---|---|");
    for log in [16, 20, 21, 24, 26].into_iter().filter(|&l| l <= max_log) {
        let n = 1usize << log;
        let mut s = Stream::new([7; 32], 0);
        let (x, y) = (words(&mut s, n), words(&mut s, n));
        let (x1, y1) = (words(&mut s, n), words(&mut s, n));
        let x2: Vec<Gf64> = x.iter().zip(&x1).map(|(&a, &b)| a + b).collect();
        let y2: Vec<Gf64> = y.iter().zip(&y1).map(|(&a, &b)| a + b).collect();
        let z = x
            .iter()
            .zip(&y)
            .fold(Gf64::ZERO, |acc, (&a, &b)| acc + a * b);
        for k in [4usize, 8] {
            let pad = || Stream::new([1; 32], 0);
            let mut p = Prover::new(x.clone(), y.clone(), k, pad(), Stream::new([2; 32], 0));
            let mut v1 = Verifier::new(
                Source::Pads(Box::new(pad())),
                x1.clone(),
                y1.clone(),
                Gf64(5),
                k,
            );
            let mut v2 = Verifier::new(Source::Messages, x2.clone(), y2.clone(), z + Gf64(5), k);
            let mut key = Stream::new([3; 32], 0);
            let (mut tp, mut tv, mut levels, mut bytes) = (0.0, 0.0, 0, 0);
            let mut len = n;
            while !v2.is_done() {
                let t = Instant::now();
                let msg = p.message().expect("message");
                tp += t.elapsed().as_secs_f64();
                bytes += 8 * message_len(len, k);
                let t = Instant::now();
                v1.receive(None).expect("v1");
                tv += t.elapsed().as_secs_f64();
                v2.receive(Some(&msg)).expect("v2");
                let r = challenge(&mut key, k);
                let t = Instant::now();
                p.fold(r);
                tp += t.elapsed().as_secs_f64();
                let t = Instant::now();
                v1.fold(r);
                tv += t.elapsed().as_secs_f64();
                v2.fold(r);
                levels += 1;
                len = len.div_ceil(factor(len, k));
            }
            assert!(accepts(&v1.shares(), &v2.shares()), "the proof must hold");
            println!(
                "| 2^{log} | {k} | {tp:.3} s | {tv:.3} s | {} | {bytes} |",
                2 * levels + 1
            );
        }
    }
}
