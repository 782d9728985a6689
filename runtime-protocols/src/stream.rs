//! The one pseudo-random stream type: ChaCha12 keyed by a seed from [`crate::coins`], on a
//! stream number the caller chooses (one per instruction, per concurrent task, …).
//!
//! Every protocol draws its shares and masks through [`Stream`], so that the tests can keep
//! a ledger of every draw ([`ledger`], compiled only for tests): which party drew how many
//! bytes of which key and stream, from a stream made where. Two streams of one key and
//! number in one party (a two-time pad) and holders of a key that draw it differently (a
//! mask one of them uses alone, though the other knows it) are then visible.

use chacha20::rand_core::{SeedableRng, TryCryptoRng, TryRng};
use chacha20::ChaCha12Rng;
use std::convert::Infallible;

/// A ChaCha12 stream (with its ledger entry in test builds).
pub struct Stream {
    rng: ChaCha12Rng,
    #[cfg(any(test, feature = "view-tests"))]
    entry: Option<ledger::Entry>,
}

impl Stream {
    /// Stream number `stream` of the key `seed` (stream 0 is ChaCha's default).
    #[track_caller]
    pub fn new(seed: [u8; 32], stream: u64) -> Stream {
        Self::with_tap(&Tap::current(), seed, stream)
    }

    /// [`Stream::new`] for the party of `tap`: for streams made on worker threads, which do
    /// not know whose they are (capture the tap on the party's thread).
    #[track_caller]
    pub fn with_tap(tap: &Tap, seed: [u8; 32], stream: u64) -> Stream {
        let mut rng = ChaCha12Rng::from_seed(seed);
        if stream != 0 {
            rng.set_stream(stream);
        }
        #[cfg(any(test, feature = "view-tests"))]
        {
            let entry = tap.0.as_ref().map(|t| {
                ledger::Entry::new(t.clone(), &seed, stream, std::panic::Location::caller())
            });
            Stream { rng, entry }
        }
        #[cfg(not(any(test, feature = "view-tests")))]
        {
            let _ = tap;
            Stream { rng }
        }
    }

    /// The key this stream was made from (to derive another stream of it).
    pub fn seed(&self) -> [u8; 32] {
        self.rng.get_seed()
    }

    #[inline]
    fn note(&mut self, _bytes: usize) {
        #[cfg(any(test, feature = "view-tests"))]
        if let Some(e) = self.entry.as_mut() {
            e.drawn += _bytes as u64;
        }
    }
}

impl TryRng for Stream {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.note(4);
        self.rng.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.note(8);
        self.rng.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.note(dst.len());
        self.rng.try_fill_bytes(dst)
    }
}

impl TryCryptoRng for Stream {}

/// Whose streams the current thread makes (the ledger's party); empty outside the tests'
/// ledger, and zero-sized in a release build.
#[derive(Clone, Default)]
pub struct Tap(#[cfg(any(test, feature = "view-tests"))] Option<ledger::Tap>);

impl Tap {
    /// The tap the current thread runs under.
    pub fn current() -> Tap {
        #[cfg(any(test, feature = "view-tests"))]
        {
            Tap(ledger::current())
        }
        #[cfg(not(any(test, feature = "view-tests")))]
        {
            Tap()
        }
    }

    /// Run the current thread under this tap until the guard drops: a party's work moved
    /// to another thread (the VM's concurrent instructions) stays that party's.
    pub fn enter(&self) -> TapGuard {
        #[cfg(any(test, feature = "view-tests"))]
        {
            TapGuard(self.0.as_ref().map(ledger::Tap::enter))
        }
        #[cfg(not(any(test, feature = "view-tests")))]
        {
            TapGuard()
        }
    }
}

/// Restores the thread's previous tap when dropped.
pub struct TapGuard(
    // Held for its `Drop`, never read.
    #[cfg(any(test, feature = "view-tests"))]
    #[allow(dead_code)]
    Option<ledger::Entered>,
);

#[cfg(any(test, feature = "view-tests"))]
pub mod ledger {
    //! The mask ledger of the tests: every stream a party makes while a [`Ledger`] is
    //! entered on its thread is recorded (key fingerprint, stream number, where it was
    //! made, how many bytes it gave) when it is dropped; [`Ledger::verify`] then asserts
    //! that no party drew the same bytes of a key twice and that every holder of a key drew
    //! the same bytes of it.

    use crate::PartyId;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::panic::Location;
    use std::sync::{Arc, Mutex};

    /// One stream's use by one party.
    #[derive(Clone, Debug)]
    pub struct Record {
        pub party: PartyId,
        /// The first 8 bytes of the BLAKE3 hash of the seed (never the seed).
        pub key: [u8; 8],
        pub stream: u64,
        pub site: &'static Location<'static>,
        pub bytes: u64,
    }

    /// A thread's ledger and party.
    #[derive(Clone)]
    pub struct Tap {
        log: Arc<Mutex<Vec<Record>>>,
        party: PartyId,
    }

    thread_local! {
        static CURRENT: RefCell<Option<Tap>> = const { RefCell::new(None) };
    }

    pub(super) fn current() -> Option<Tap> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// A stream's entry while it lives; recorded when the stream is dropped.
    pub(super) struct Entry {
        tap: Tap,
        key: [u8; 8],
        stream: u64,
        site: &'static Location<'static>,
        pub(super) drawn: u64,
    }

    impl Entry {
        pub(super) fn new(
            tap: Tap,
            seed: &[u8; 32],
            stream: u64,
            site: &'static Location<'static>,
        ) -> Entry {
            let mut key = [0u8; 8];
            key.copy_from_slice(&blake3::hash(seed).as_bytes()[..8]);
            Entry {
                tap,
                key,
                stream,
                site,
                drawn: 0,
            }
        }
    }

    impl Drop for Entry {
        fn drop(&mut self) {
            if self.drawn == 0 {
                return;
            }
            let r = Record {
                party: self.tap.party,
                key: self.key,
                stream: self.stream,
                site: self.site,
                bytes: self.drawn,
            };
            // A log poisoned by another thread's panic still takes records.
            let mut log = self.tap.log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(r);
        }
    }

    /// The records of one run.
    #[derive(Clone, Default)]
    pub struct Ledger {
        log: Arc<Mutex<Vec<Record>>>,
    }

    /// While alive, streams made on this thread are recorded as `party`'s.
    pub struct Entered {
        previous: Option<Tap>,
    }

    impl Drop for Entered {
        fn drop(&mut self) {
            let previous = self.previous.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }

    impl Tap {
        pub(super) fn enter(&self) -> Entered {
            let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
            Entered { previous }
        }
    }

    impl Ledger {
        /// Record the streams this thread makes from now on as `party`'s.
        pub fn enter(&self, party: PartyId) -> Entered {
            Tap {
                log: self.log.clone(),
                party,
            }
            .enter()
        }

        pub fn records(&self) -> Vec<Record> {
            self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        /// How many key streams more than one party drew (what the holders' comparison
        /// had to compare).
        pub fn shared(&self) -> usize {
            let mut holders: BTreeMap<([u8; 8], u64), usize> = BTreeMap::new();
            for r in self.records() {
                *holders.entry((r.key, r.stream)).or_default() += 1;
            }
            holders.values().filter(|&&h| h > 1).count()
        }

        /// Every violation: a party that drew one key and stream from two streams (the same
        /// bytes twice), and holders of a key and stream that drew different amounts of it.
        pub fn verify(&self) -> Result<(), String> {
            verify(&self.records())
        }
    }

    /// [`Ledger::verify`] over given records.
    pub fn verify(records: &[Record]) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut by_key: BTreeMap<([u8; 8], u64), Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_key.entry((r.key, r.stream)).or_default().push(r);
        }
        for ((key, stream), rs) in &by_key {
            let name = format!("key {} stream {stream}", hex(key));
            let mut per_party: BTreeMap<PartyId, &Record> = BTreeMap::new();
            for r in rs {
                if let Some(first) = per_party.insert(r.party, r) {
                    problems.push(format!(
                        "party {} draws {name} twice: from a stream made at {} and one made \
                         at {} (a two-time pad)",
                        r.party, first.site, r.site
                    ));
                }
            }
            let mut amounts = per_party.values().map(|r| (r.bytes, r.party, r.site));
            if let Some((bytes, party, site)) = amounts.next() {
                for (b, p, s) in amounts {
                    if b != bytes {
                        problems.push(format!(
                            "holders of {name} draw it differently: party {party} {bytes} \
                             bytes (stream made at {site}), party {p} {b} bytes (at {s})"
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::ledger::Ledger;
    use super::*;
    use chacha20::rand_core::Rng;

    #[test]
    fn a_stream_is_chacha12_on_its_stream_number() {
        let seed = [9u8; 32];
        let mut a = Stream::new(seed, 0);
        let mut b = ChaCha12Rng::from_seed(seed);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut c = Stream::new(seed, 5);
        let mut d = ChaCha12Rng::from_seed(seed);
        d.set_stream(5);
        assert_eq!(c.next_u64(), d.next_u64());
        assert_eq!(c.seed(), seed);
    }

    /// Both holders draw 24 bytes of the key, each from one stream: clean.
    #[test]
    fn holders_drawing_alike_pass() {
        let l = Ledger::default();
        for party in 0..2 {
            let _in = l.enter(party);
            let mut s = Stream::new([1; 32], 3);
            s.next_u64();
            let mut buf = [0u8; 16];
            s.fill_bytes(&mut buf);
        }
        assert_eq!(l.records().len(), 2);
        l.verify().expect("clean");
    }

    /// Detector power: a party that makes a key's stream twice (a two-time pad) and a
    /// holder that draws a key further than the other holder are both reported.
    #[test]
    fn a_two_time_pad_and_a_lone_draw_are_seen() {
        let l = Ledger::default();
        {
            let _in = l.enter(0);
            Stream::new([2; 32], 1).next_u64();
            Stream::new([2; 32], 1).next_u64();
        }
        let err = l.verify().expect_err("a reused stream");
        assert!(err.contains("two-time pad"), "{err}");

        let l = Ledger::default();
        for (party, words) in [(0, 2), (1, 3)] {
            let _in = l.enter(party);
            let mut s = Stream::new([3; 32], 0);
            for _ in 0..words {
                s.next_u64();
            }
        }
        let err = l.verify().expect_err("a lone draw");
        assert!(err.contains("draw it differently"), "{err}");

        // Another party's stream number of the same key is another stream.
        let l = Ledger::default();
        for party in 0..2 {
            let _in = l.enter(party);
            Stream::new([4; 32], party as u64).next_u64();
        }
        l.verify().expect("different streams");
    }

    #[test]
    fn streams_outside_a_ledger_are_not_recorded() {
        let l = Ledger::default();
        Stream::new([5; 32], 0).next_u64();
        assert!(l.records().is_empty());
    }
}
