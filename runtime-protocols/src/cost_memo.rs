//! The answers of [`Costs::rounds_wired`] kept for the process, for costs that name
//! themselves exactly ([`Costs::memo_key`]).
//!
//! A call's rounds come from a dry run of the protocol's own code (`dry_run.rs`), which
//! takes about as long as the call's local work: a tenth of an ImageNet-size run. `qmpc
//! run` asks for each call twice — to choose the ring (`qmpc_vm::cost::ring_bits`, at
//! batch 1) and to predict the run's figures — and `qmpc cost` likewise; a training loop
//! asks for the same calls every step. The answer is a function of the costs (protocol,
//! ring, favor, parties), the call (its variant and every parameter) and the wires, so it
//! is kept under a digest of the three.

use crate::cost::{Call, Costs, Rounds};
use crate::wires::Wires;
use crate::ProtocolError;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Answers kept at most; the map starts afresh beyond (a bound for long-lived processes
/// that cost many different programs).
const MAX_KEPT: usize = 1 << 16;

/// [`Costs::rounds_wired`] of `costs`, kept where the costs have a [`Costs::memo_key`].
pub fn rounds_wired(
    costs: &dyn Costs,
    call: Call<'_>,
    wires: Wires,
) -> Result<Rounds, ProtocolError> {
    let Some(key) = costs.memo_key() else {
        return costs.rounds_wired(call, wires);
    };
    type Kept = Mutex<HashMap<[u8; 32], Rounds>>;
    static KEPT: OnceLock<Kept> = OnceLock::new();
    let kept = KEPT.get_or_init(Default::default);
    let digest = digest(&key, call, wires);
    let lock = || kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(r) = lock().get(&digest) {
        return Ok(r.clone());
    }
    // Not under the lock: the dry run itself runs calls on rayon's threads.
    let r = costs.rounds_wired(call, wires)?;
    let mut map = lock();
    if map.len() >= MAX_KEPT {
        map.clear();
    }
    map.insert(digest, r.clone());
    Ok(r)
}

/// A digest of the costs' key, the wires and everything the call says.
fn digest(key: &str, call: Call<'_>, wires: Wires) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut text = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    text(key);
    text(&format!("{wires:?}"));
    let mut ints: Vec<u8> = Vec::new();
    let mut put = |v: &[i64]| {
        ints.extend((v.len() as u64).to_le_bytes());
        ints.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    };
    // The per-element parameters as bytes, the rest (a few scalars) as text.
    let rest = match call {
        Call::Rescale {
            num,
            den,
            bounds,
            mode,
        } => {
            put(num);
            put(den);
            format!("rescale {bounds:?} {mode:?}")
        }
        Call::Requantize { q, bounds, mode } => {
            put(&q.num);
            put(&q.den);
            put(&q.zp);
            format!("requantize {} {} {bounds:?} {mode:?}", q.lo, q.hi)
        }
        Call::ProductRequantize {
            dims,
            q,
            bounds,
            mode,
        } => {
            put(&q.num);
            put(&q.den);
            put(&q.zp);
            format!(
                "product requantize {dims:?} {} {} {bounds:?} {mode:?}",
                q.lo, q.hi
            )
        }
        Call::Input { .. }
        | Call::Reveal { .. }
        | Call::Mul { .. }
        | Call::MatMul(_)
        | Call::Clamp { .. }
        | Call::Max { .. }
        | Call::Argmax { .. }
        | Call::Lookup { .. } => format!("{call:?}"),
    };
    h.update(&ints);
    h.update(rest.as_bytes());
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bounds, Requant, TruncMode};

    fn requantize(q: &Requant) -> Call<'_> {
        Call::Requantize {
            q,
            bounds: Bounds {
                lo: -1000,
                hi: 1000,
            },
            mode: TruncMode::Exact,
        }
    }

    /// Calls that differ in any parameter, or in their wires or costs, have different
    /// digests; the same call has the same.
    #[test]
    fn digests_tell_every_parameter_apart() {
        let q = Requant {
            num: vec![3, 3],
            den: vec![64, 64],
            zp: vec![0, 1],
            lo: -128,
            hi: 127,
        };
        let base = digest("rep3/64/Bytes", requantize(&q), Wires::default());
        assert_eq!(
            base,
            digest("rep3/64/Bytes", requantize(&q.clone()), Wires::default())
        );
        assert_ne!(
            base,
            digest("rep3/32/Bytes", requantize(&q), Wires::default())
        );
        let narrow = Wires {
            narrow_in: true,
            ..Wires::default()
        };
        assert_ne!(base, digest("rep3/64/Bytes", requantize(&q), narrow));
        let mut other = q.clone();
        other.zp[1] = 2;
        assert_ne!(
            base,
            digest("rep3/64/Bytes", requantize(&other), Wires::default())
        );
        let mut other = q.clone();
        other.hi = 126;
        assert_ne!(
            base,
            digest("rep3/64/Bytes", requantize(&other), Wires::default())
        );
        // The same numbers in another parameter.
        let swapped = Requant {
            num: vec![3, 3, 64],
            den: vec![64],
            ..q.clone()
        };
        assert_ne!(
            base,
            digest("rep3/64/Bytes", requantize(&swapped), Wires::default())
        );
    }

    /// Kept answers are the answers.
    #[test]
    fn kept_answers_equal_fresh_ones() {
        let costs = crate::Rep3Costs::new(64);
        let q = Requant {
            num: vec![5; 40],
            den: vec![256; 40],
            zp: vec![3; 40],
            lo: -128,
            hi: 127,
        };
        let fresh = costs
            .rounds_wired(requantize(&q), Wires::default())
            .unwrap();
        for _ in 0..2 {
            let kept = rounds_wired(&costs, requantize(&q), Wires::default()).unwrap();
            assert_eq!(kept, fresh);
        }
    }
}
