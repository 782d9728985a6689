//! The dealer's correlated randomness and how a party holds its share of it.
//!
//! Every primitive call takes one [`Block`] of material whose [`Layout`] is a function of
//! public parameters only. The dealer shares it with a PRG trick (as CrypTen's trusted
//! third party does): party `i < n − 1` draws its share from stream `index + 1` of a seed
//! it got from the dealer (`index` is the instruction's), and only the last party receives
//! bytes, the *correction* that makes the shares add up (XOR up, for bits). So the dealer
//! sends one seed to each party and one correction per primitive call to the last party.
//!
//! A block may also carry *public* bytes that every party receives as they are (the
//! correction words of `fss` keys, which both keys share). Corrections and public bytes
//! travel in chunks beside the computation ([`super::chunks`]).

use super::chunks::{Inbox, Record};
use crate::bitvec::{clear_tail, words};
use crate::net::{Stats, Transport};
use crate::stream::Stream;
use crate::word::Word;
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::Rng;

type R<T> = Result<T, ProtocolError>;

/// The shape of one block: ring words (additive shares), then bit segments (XOR shares),
/// each segment padded to whole 64-bit words so that slicing never shifts bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Layout {
    pub words: usize,
    pub segments: Vec<usize>,
    /// Bytes every party receives as they are.
    pub public: usize,
}

impl Layout {
    pub fn words(words: usize) -> Layout {
        Layout {
            words,
            segments: Vec::new(),
            public: 0,
        }
    }

    /// Append `bytes` public bytes.
    pub fn public(mut self, bytes: usize) -> Layout {
        self.public += bytes;
        self
    }

    /// Append a segment of `bits` bits.
    pub fn seg(mut self, bits: usize) -> Layout {
        self.segments.push(bits);
        self
    }

    fn bit_words(&self) -> usize {
        self.segments.iter().map(|&b| words(b)).sum()
    }

    /// Bytes the last party receives for this layout: the correction, then the public
    /// bytes.
    pub fn bytes(&self, word_bytes: usize) -> usize {
        self.words * word_bytes + 8 * self.bit_words() + self.public
    }
}

/// One block of material (values at the dealer, shares at a party).
#[derive(Clone, Debug, Default)]
pub(crate) struct Block<W> {
    pub words: Vec<W>,
    pub segs: Vec<Vec<u64>>,
    /// Not shared: the same at every party (a party's are a part of the dealer's chunk).
    pub public: Record,
}

impl<W> Block<W> {
    pub fn of_words(words: Vec<W>) -> Block<W> {
        Block {
            words,
            segs: Vec::new(),
            public: Record::default(),
        }
    }
}

/// Stream `task + 1` of `seed`: a party's share of the material of the instruction whose
/// stream number is `task` ([`crate::task_id`]).
#[track_caller]
pub(crate) fn stream(seed: &[u8; 32], task: u64) -> Stream {
    Stream::new(*seed, task + 1)
}

/// `n` pseudo-random ring words.
pub(crate) fn random_words<W: Word>(rng: &mut Stream, n: usize) -> Vec<W> {
    let mut bytes = vec![0u8; n * W::BYTES];
    rng.fill_bytes(&mut bytes);
    bytes.chunks_exact(W::BYTES).map(W::read).collect()
}

/// `n` pseudo-random packed bits.
pub(crate) fn random_bits(rng: &mut Stream, n: usize) -> Vec<u64> {
    let mut v = random_words::<u64>(rng, words(n));
    clear_tail(&mut v, n);
    v
}

/// A pseudo-random block of layout `l`.
pub(crate) fn draw<W: Word>(rng: &mut Stream, l: &Layout) -> Block<W> {
    let words_out = random_words(rng, l.words);
    let segs = l
        .segments
        .iter()
        .map(|&bits| random_bits(rng, bits))
        .collect();
    Block {
        words: words_out,
        segs,
        public: Record::default(),
    }
}

/// Subtract (XOR, for bits) `share` from `block` in place.
pub(crate) fn remove_share<W: Word>(block: &mut Block<W>, share: &Block<W>) {
    for (x, s) in block.words.iter_mut().zip(&share.words) {
        *x = x.sub(*s);
    }
    for (seg, s) in block.segs.iter_mut().zip(&share.segs) {
        for (x, y) in seg.iter_mut().zip(s) {
            *x ^= y;
        }
    }
}

/// Append `block` to `out` as bytes.
pub(crate) fn encode_block<W: Word>(block: &Block<W>, out: &mut Vec<u8>) {
    for w in &block.words {
        w.write(out);
    }
    for seg in &block.segs {
        for w in seg {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out.extend_from_slice(&block.public);
}

/// The block of layout `l` at the start of `record` (which holds it whole); its public
/// bytes stay in the record.
fn decode_block<W: Word>(record: &Record, l: &Layout) -> Block<W> {
    let bytes = record.bytes();
    let split = l.words * W::BYTES;
    let words_out = bytes[..split].chunks_exact(W::BYTES).map(W::read).collect();
    let mut at = split;
    let segs = l
        .segments
        .iter()
        .map(|&bits| {
            let n = words(bits);
            let mut v: Vec<u64> = bytes[at..at + 8 * n]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            at += 8 * n;
            clear_tail(&mut v, bits);
            v
        })
        .collect();
    Block {
        words: words_out,
        segs,
        public: record.part(at, l.public).unwrap_or_default(),
    }
}

/// Where a party takes its share of the current instruction's material from.
pub(crate) struct Source {
    dealer: PartyId,
    /// Every party but the last: its seed, and its stream for the current instruction.
    seed: Option<[u8; 32]>,
    stream: Option<Stream>,
    /// The chunks from the dealer (the last party's corrections, or the public records
    /// of a seed holder of `fss`); `None` in a fork and where nothing but a seed comes.
    inbox: Option<Inbox>,
    /// The current instruction's record, or why it could not be fetched.
    record: Result<Record, String>,
    index: usize,
    at: usize,
}

impl Source {
    /// A party's source: its seed if it has one, and whether chunks come too.
    pub fn new(dealer: PartyId, seed: Option<[u8; 32]>, chunks: bool) -> Source {
        Source {
            dealer,
            seed,
            stream: None,
            inbox: chunks.then(|| Inbox::new(dealer)),
            record: Ok(Record::default()),
            index: 0,
            at: 0,
        }
    }

    /// Start the material of the instruction whose stream number is `task`: its record,
    /// read from the dealer's chunks over `net` if it has not come yet, and its stream of
    /// the seed.
    pub fn begin(&mut self, task: u64, net: &mut dyn Transport) {
        let record = self.fetch(task, net);
        self.start(task, record);
    }

    /// A source for another instruction, started at `task` ([`Source::begin`]): it
    /// takes that instruction's record along; the chunks stay here.
    pub fn fork(&mut self, task: u64, net: &mut dyn Transport) -> Source {
        let record = self.fetch(task, net);
        let mut f = Source::new(self.dealer, self.seed, false);
        f.start(task, record);
        f
    }

    /// The record of the instruction whose stream number is `task`.
    fn fetch(&mut self, task: u64, net: &mut dyn Transport) -> Result<Record, String> {
        match self.inbox.as_mut() {
            Some(inbox) => inbox.take(crate::task_index(task), net),
            None => Ok(Record::default()),
        }
    }

    fn start(&mut self, task: u64, record: Result<Record, String>) {
        self.index = crate::task_index(task);
        self.at = 0;
        self.stream = self.seed.as_ref().map(|s| stream(s, task));
        self.record = record;
    }

    /// The next run of a session begins: its chunks follow the last run's.
    pub fn next_run(&mut self) {
        if let Some(inbox) = self.inbox.as_mut() {
            inbox.next_run();
        }
    }

    /// Traffic of the dealer's chunks so far: preprocessing, not online.
    pub fn traffic(&self) -> Stats {
        self.inbox.as_ref().map(Inbox::traffic).unwrap_or_default()
    }

    /// This party's share of the next block.
    pub fn take<W: Word>(&mut self, l: &Layout) -> R<Block<W>> {
        if self.stream.is_some() {
            let public = self.bytes(l.public)?;
            let rng = self
                .stream
                .as_mut()
                .ok_or_else(|| ProtocolError::Invalid("a seed holder without its stream".into()))?;
            let mut block = draw(rng, l);
            block.public = public;
            return Ok(block);
        }
        let data = self.bytes(l.bytes(W::BYTES))?;
        Ok(decode_block(&data, l))
    }

    /// The next `len` bytes of the current instruction's record.
    fn bytes(&mut self, len: usize) -> R<Record> {
        if len == 0 {
            return Ok(Record::default());
        }
        let (dealer, index) = (self.dealer, self.index);
        let record = self.record.as_ref().map_err(|e| ProtocolError::Peer {
            party: dealer,
            what: format!("the dealer's material for instruction {index} did not come: {e}"),
        })?;
        let data = record
            .part(self.at, len)
            .ok_or_else(|| ProtocolError::Peer {
                party: dealer,
                what: format!("the dealer sent too little material for instruction {index}"),
            })?;
        self.at += len;
        Ok(data)
    }
}
