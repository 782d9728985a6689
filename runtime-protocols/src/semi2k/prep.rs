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
//! correction words of `fss` keys, which both keys share); the parties with a seed get
//! them after their seed. Both messages are [`Records`]: per instruction, its index, its
//! length and its bytes, written and read in place.

use crate::bitvec::{clear_tail, words};
use crate::net::{receive_long, send_long, Stats, Transport};
use crate::stream::Stream;
use crate::word::Word;
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Not shared: the same at every party.
    pub public: Vec<u8>,
}

impl<W> Block<W> {
    pub fn of_words(words: Vec<W>) -> Block<W> {
        Block {
            words,
            segs: Vec::new(),
            public: Vec::new(),
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
        public: Vec::new(),
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

fn decode_block<W: Word>(bytes: &[u8], l: &Layout) -> Block<W> {
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
        public: bytes[at..at + l.public].to_vec(),
    }
}

/// A dealer's message being written: records `index (u32), length (u32), bytes`, one per
/// instruction with material, in the order the dealer walks the program. Written in
/// place, so the material is never copied into a second buffer.
#[derive(Debug, Default)]
pub(crate) struct Records {
    out: Vec<u8>,
    /// Where the open record's header starts, and its instruction.
    open: Option<(usize, usize)>,
    /// The first instruction whose record passed what its u32 length can say.
    too_long: Option<usize>,
}

impl Records {
    /// Records after `prefix` bytes of zeros (a seed's room).
    pub fn with_prefix(prefix: usize) -> Records {
        Records {
            out: vec![0; prefix],
            open: None,
            too_long: None,
        }
    }

    /// Append `data` to instruction `index`'s record (opening it if needed).
    pub fn append(&mut self, index: usize, data: impl FnOnce(&mut Vec<u8>)) {
        if self.open.map(|(_, i)| i) != Some(index) {
            self.close();
            self.open = Some((self.out.len(), index));
            self.out.extend((index as u32).to_le_bytes());
            self.out.extend(0u32.to_le_bytes());
        }
        data(&mut self.out);
    }

    fn close(&mut self) {
        if let Some((at, index)) = self.open.take() {
            let len = u32::try_from(self.out.len() - at - 8).unwrap_or_else(|_| {
                self.too_long.get_or_insert(index);
                0
            });
            self.out[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_none()
    }

    /// The message; an error where one instruction's material passed 4 GiB, which a
    /// record's length cannot say.
    pub fn finish(mut self) -> Result<Vec<u8>, ProtocolError> {
        self.close();
        if let Some(index) = self.too_long {
            return Err(ProtocolError::Invalid(format!(
                "the dealer's material for instruction {index} passes the 4 GiB one record \
                 carries; run a smaller batch"
            )));
        }
        Ok(self.out)
    }
}

/// A received dealer message: the bytes, and where each instruction's record lies.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    bytes: Vec<u8>,
    entries: BTreeMap<usize, (usize, usize)>,
}

impl Directory {
    /// Parse the records of `bytes` from `start` on; an error names the dealer.
    pub fn decode(bytes: Vec<u8>, start: usize, dealer: PartyId) -> R<Directory> {
        let bad = |what: &str| ProtocolError::Peer {
            party: dealer,
            what: format!("the dealer sent malformed preprocessing: {what}"),
        };
        let u32_at = |at: usize| -> R<usize> {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(|b| u32::from_le_bytes(b) as usize)
                .ok_or_else(|| bad("it ends early"))
        };
        let mut entries = BTreeMap::new();
        let mut at = start;
        while at < bytes.len() {
            let (index, len) = (u32_at(at)?, u32_at(at + 4)?);
            let end = (at + 8)
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| bad("a length past its end"))?;
            if entries.insert(index, (at + 8, end)).is_some() {
                return Err(bad("an instruction twice"));
            }
            at = end;
        }
        Ok(Directory { bytes, entries })
    }

    /// Instruction `index`'s bytes (none if it has no record).
    pub fn get(&self, index: usize) -> &[u8] {
        self.entries
            .get(&index)
            .map_or(&[], |&(a, b)| &self.bytes[a..b])
    }
}

/// What a party sends the dealer to ask for the next run's material.
const RUN_REQUEST: u8 = 0x52;

/// Ask the dealer (party `dealer`) for the material of the next run of a session, and
/// receive it: the dealer walks a run ahead of the parties, and sends a run's material
/// only once every party asked, so at most one run of it waits in buffers.
pub(crate) fn request_run(net: &mut dyn Transport, dealer: PartyId) -> R<Vec<u8>> {
    net.exchange(vec![(dealer, vec![RUN_REQUEST])], &[])?;
    Ok(receive_long(net, dealer)?)
}

/// The dealer's side of [`request_run`]: wait for every party's request, then send each
/// its message.
pub(crate) fn answer_run(net: &mut dyn Transport, out: Vec<(PartyId, Vec<u8>)>) -> R<()> {
    let parties: Vec<PartyId> = out.iter().map(|&(p, _)| p).collect();
    for (p, m) in net.exchange(Vec::new(), &parties)? {
        if m != [RUN_REQUEST] {
            return Err(ProtocolError::Peer {
                party: p,
                what: format!(
                    "sent {} bytes where the dealer expects a run request",
                    m.len()
                ),
            });
        }
    }
    Ok(send_long(net, out)?)
}

/// A dealer's link to the parties while it deals a session run by run: the first run's
/// material goes out unasked (the parties' set-up receives it), every later run's once
/// every party asked ([`request_run`]). Both dealers (`semi2k`'s, `spdz2k`'s) hold one.
#[derive(Default)]
pub(crate) struct DealerSession {
    net: Option<Box<dyn Transport>>,
    runs_sent: u64,
}

impl DealerSession {
    pub fn attach(&mut self, net: Box<dyn Transport>) {
        self.net = Some(net);
    }

    pub fn is_attached(&self) -> bool {
        self.net.is_some()
    }

    /// Whether no run's material went out yet (the first message carries the seeds).
    pub fn first(&self) -> bool {
        self.runs_sent == 0
    }

    pub fn stats(&self) -> Stats {
        self.net.as_ref().map(|n| n.stats()).unwrap_or_default()
    }

    pub fn abort(&mut self, reason: &str) {
        if let Some(net) = self.net.as_mut() {
            net.abort(reason);
        }
    }

    /// Send one run's messages.
    pub fn send_run(&mut self, out: Vec<(PartyId, Vec<u8>)>) -> R<()> {
        let net = self
            .net
            .as_mut()
            .ok_or_else(|| ProtocolError::Invalid("the dealer has no session to send to".into()))?;
        let first = self.runs_sent == 0;
        self.runs_sent += 1;
        if first {
            Ok(send_long(net.as_mut(), out)?)
        } else {
            answer_run(net.as_mut(), out)
        }
    }
}

/// Where a party takes its share of the current instruction's material from.
pub(crate) struct Source {
    dealer: PartyId,
    /// Every party but the last: its seed, and its stream for the current instruction.
    seed: Option<[u8; 32]>,
    stream: Option<Stream>,
    /// The last party: the dealer's corrections and public bytes; every other party: the
    /// public bytes. Read from `at` on for the current index.
    records: Arc<Directory>,
    index: usize,
    at: usize,
}

impl Source {
    pub fn new(dealer: PartyId, seed: Option<[u8; 32]>, records: Directory) -> Source {
        Source {
            dealer,
            seed,
            stream: None,
            records: Arc::new(records),
            index: 0,
            at: 0,
        }
    }

    /// A copy for another instruction (its stream is set by [`Source::begin`]).
    pub fn fork(&self) -> Source {
        Source {
            dealer: self.dealer,
            seed: self.seed,
            stream: None,
            records: self.records.clone(),
            index: 0,
            at: 0,
        }
    }

    /// Start the material of the instruction whose stream number is `task`: its record
    /// in this run's message, its stream of the seed.
    pub fn begin(&mut self, task: u64) {
        self.index = crate::task_index(task);
        self.at = 0;
        self.stream = self.seed.as_ref().map(|s| stream(s, task));
    }

    /// Fetch run `run`'s material from the dealer over `net` (run 0's came with the
    /// set-up); returns the traffic it took, which is preprocessing, not online.
    pub fn fetch_run(&mut self, net: &mut dyn Transport, run: u64) -> R<Stats> {
        if run == 0 {
            return Ok(Stats::default());
        }
        let before = net.stats();
        let msg = request_run(net, self.dealer)?;
        // Later messages carry no seed in front.
        self.records = Arc::new(Directory::decode(msg, 0, self.dealer)?);
        self.stream = None;
        Ok(net.stats().since(before))
    }

    /// This party's share of the next block.
    pub fn take<W: Word>(&mut self, l: &Layout) -> R<Block<W>> {
        if let Some(rng) = self.stream.as_mut() {
            let mut block = draw(rng, l);
            block.public = self.bytes(l.public)?.to_vec();
            return Ok(block);
        }
        let data = self.bytes(l.bytes(W::BYTES))?;
        Ok(decode_block(data, l))
    }

    /// The next `len` bytes of the current instruction's message.
    fn bytes(&mut self, len: usize) -> R<&[u8]> {
        if len == 0 {
            return Ok(&[]);
        }
        let data = self
            .records
            .get(self.index)
            .get(self.at..self.at + len)
            .ok_or_else(|| ProtocolError::Peer {
                party: self.dealer,
                what: format!(
                    "the dealer sent too little material for instruction {}",
                    self.index
                ),
            })?;
        self.at += len;
        Ok(data)
    }
}
