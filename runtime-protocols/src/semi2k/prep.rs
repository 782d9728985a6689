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
use crate::mux::Fetcher;
use crate::net::{Stats, Transport};
use crate::stream::Stream;
use crate::word::Word;
use crate::{PartyId, ProtocolError};
use chacha20::rand_core::Rng;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// Bytes a huge gate's late material comes in per block at least (`fss` keys, lookup
/// one-hot vectors): the dealer makes and sends it, and a party uses it, a block at a
/// time ([`pieces`]).
#[cfg(not(test))]
pub(crate) const PIECE: usize = 1 << 20;
/// The unit tests' gates are small: cut them into many pieces.
#[cfg(test)]
pub(crate) const PIECE: usize = 1 << 9;

/// Elements `0..n` in runs whose material (`bytes(i)` for element `i`) reaches [`PIECE`]
/// (but the last), with each run's bytes: the blocks of a gate's material that is used
/// after its opening, so that neither the dealer nor a party holds all of it at once.
pub(crate) fn pieces(n: usize, bytes: impl Fn(usize) -> usize) -> Vec<(Range<usize>, usize)> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for i in 0..n {
        sum += bytes(i);
        if sum >= PIECE {
            out.push((start..i + 1, sum));
            (start, sum) = (i + 1, 0);
        }
    }
    if start < n {
        out.push((start..n, sum));
    }
    out
}

/// Stream `task + 1` of `seed`: a party's share of the material of the instruction whose
/// stream number is `task` ([`crate::task_id`]).
#[track_caller]
pub(crate) fn stream(seed: &[u8; 32], task: u64) -> Stream {
    Stream::new(*seed, task + 1)
}

/// Bytes a draw takes from its stream at a time, so that no copy of a whole draw's bytes
/// sits beside its words (a block of `spdz2k`'s material may be hundreds of MB): a
/// multiple of ChaCha's 64-byte block and of every word's size, so the words read the
/// same as from one fill.
const DRAW_PIECE: usize = 1 << 16;

/// `f` on each of `n` pseudo-random ring words, in order.
fn for_each_random_word<W: Word>(rng: &mut Stream, n: usize, mut f: impl FnMut(W)) {
    let mut left = n * W::BYTES;
    let mut buf = vec![0u8; left.min(DRAW_PIECE)];
    while left > 0 {
        let piece = &mut buf[..left.min(DRAW_PIECE)];
        rng.fill_bytes(piece);
        piece.chunks_exact(W::BYTES).for_each(|c| f(W::read(c)));
        left -= piece.len();
    }
}

/// `n` pseudo-random ring words.
pub(crate) fn random_words<W: Word>(rng: &mut Stream, n: usize) -> Vec<W> {
    let mut out = Vec::with_capacity(n);
    for_each_random_word(rng, n, |w| out.push(w));
    out
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

/// Subtract (XOR, for bits) from `block` the share [`draw`] draws from `rng` for layout
/// `l`, its words a piece at a time (never the whole share at once).
pub(crate) fn remove_drawn_share<W: Word>(block: &mut Block<W>, rng: &mut Stream, l: &Layout) {
    let mut words = block.words.iter_mut();
    for_each_random_word::<W>(rng, l.words, |s| {
        if let Some(x) = words.next() {
            *x = x.sub(s);
        }
    });
    for (seg, &bits) in block.segs.iter_mut().zip(&l.segments) {
        for (x, y) in seg.iter_mut().zip(random_bits(rng, bits)) {
            *x ^= y;
        }
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
    // A big block exactly: grown by doubling, the record would hold up to twice a block of
    // hundreds of MB.
    let seg_bytes: usize = block.segs.iter().map(|s| 8 * s.len()).sum();
    let need = block.words.len() * W::BYTES + seg_bytes + block.public.len();
    if need >= 1 << 20 {
        out.reserve_exact(need);
    } else {
        out.reserve(need);
    }
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

/// Who reads the dealer's next chunk when the running instruction needs one.
enum Reader {
    /// This source, over the transport it is given: the VM's own copy of the protocol.
    Own,
    /// The VM, asked through a port: a copy running an instruction beside others, whose
    /// transport is that port ([`crate::mux`]).
    Vm(Fetcher),
}

/// Where a party takes its share of the current instruction's material from.
pub(crate) struct Source {
    dealer: PartyId,
    /// Every party but the last: its seed, and its stream for the current instruction.
    seed: Option<[u8; 32]>,
    stream: Option<Stream>,
    /// The chunks from the dealer (the last party's corrections, or the public records
    /// of a seed holder of `fss`), shared with the copies running beside this one; `None`
    /// where nothing but a seed comes.
    inbox: Option<Arc<Mutex<Inbox>>>,
    reader: Reader,
    /// The current instruction: its index, the parts of its record not yet taken (the
    /// first read up to `at`), whether more parts are to come, and why a chunk could not
    /// be read.
    index: usize,
    parts: VecDeque<Record>,
    at: usize,
    complete: bool,
    broken: Option<String>,
}

impl Source {
    /// A party's source: its seed if it has one, and whether chunks come too.
    pub fn new(dealer: PartyId, seed: Option<[u8; 32]>, chunks: bool) -> Source {
        Source {
            dealer,
            seed,
            stream: None,
            inbox: chunks.then(|| Arc::new(Mutex::new(Inbox::new(dealer)))),
            reader: Reader::Own,
            index: 0,
            parts: VecDeque::new(),
            at: 0,
            complete: true,
            broken: None,
        }
    }

    fn inbox(&self) -> Option<MutexGuard<'_, Inbox>> {
        // A copy that panicked left the inbox as it was between chunks: still whole.
        self.inbox
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Start the material of the instruction whose stream number is `task`: the chunks
    /// of every instruction before it, read from the dealer over `net` if they have not
    /// come yet, and its stream of the seed. Its own record may come later, part by part,
    /// as [`Source::take`] needs it.
    pub fn begin(&mut self, task: u64, net: &mut dyn Transport) {
        self.begin_unread(task);
        let index = self.index;
        let got = self.inbox().map(|mut inbox| {
            inbox.reach(index, net)?;
            Ok::<_, String>(inbox.parts(index))
        });
        match got {
            Some(Ok((parts, complete))) => {
                self.parts = parts.into();
                self.complete = complete;
            }
            Some(Err(e)) => self.broken = Some(e),
            None => {}
        }
    }

    /// [`Source::begin`] without reading: for an instruction that takes no material (an
    /// owner sharing its values), which the dataflow runner begins as soon as the run
    /// starts. Were it to read every chunk before it, a weight lowered beside its first
    /// reader would make this party hold the material of every instruction before that
    /// reader (`fss` on ResNet-18: past 6 GB within 24 s). Should it take a block after
    /// all, [`Source::bytes`] reads until the block comes.
    fn begin_unread(&mut self, task: u64) {
        self.index = crate::task_index(task);
        self.stream = self.seed.as_ref().map(|s| stream(s, task));
        self.parts.clear();
        self.at = 0;
        self.complete = self.inbox.is_none();
        self.broken = None;
    }

    /// A source for another instruction, started at `task` ([`Source::begin`], over this
    /// source's transport `net`; without reading where `reads` is false:
    /// [`Source::begin_unread`]), that runs beside others and asks for more chunks
    /// through `fetcher`.
    pub fn fork(
        &mut self,
        task: u64,
        net: &mut dyn Transport,
        fetcher: Fetcher,
        reads: bool,
    ) -> Source {
        let mut f = Source::new(self.dealer, self.seed, false);
        f.inbox = self.inbox.clone();
        f.reader = Reader::Vm(fetcher);
        if reads {
            f.begin(task, net);
        } else {
            f.begin_unread(task);
        }
        f
    }

    /// The next run of a session begins: its chunks follow the last run's.
    pub fn next_run(&mut self) {
        if let Some(mut inbox) = self.inbox() {
            inbox.next_run();
        }
    }

    /// The run is over: read the rest of its chunks ([`Inbox::finish`]).
    pub fn end_run(&mut self, net: &mut dyn Transport) -> R<()> {
        let read = self.inbox().map(|mut inbox| inbox.finish(net));
        read.unwrap_or(Ok(())).map_err(|e| self.not_come(e))
    }

    /// The error of a chunk that could not be read.
    fn not_come(&self, e: String) -> ProtocolError {
        ProtocolError::Peer {
            party: self.dealer,
            what: format!("the dealer's material did not come: {e}"),
        }
    }

    /// Traffic of the dealer's chunks so far: preprocessing, not online.
    pub fn traffic(&self) -> Stats {
        self.inbox().map(|i| i.traffic()).unwrap_or_default()
    }

    /// Read the dealer's next chunk over `net`, for a copy running beside this one
    /// ([`crate::Core::fetch_material`]).
    pub fn fetch(&mut self, net: &mut dyn Transport) -> R<()> {
        let read = self.inbox().map(|mut inbox| inbox.more(net));
        match read {
            Some(r) => r.map_err(|e| self.not_come(e)),
            None => Err(ProtocolError::Invalid(
                "a party without chunks from the dealer was asked to read one".into(),
            )),
        }
    }

    /// This party's share of the next block; `net` reads more of the dealer's chunks
    /// if the block has not come yet.
    pub fn take<W: Word>(&mut self, l: &Layout, net: &mut dyn Transport) -> R<Block<W>> {
        if self.stream.is_some() {
            let public = self.bytes(l.public, net)?;
            let rng = self
                .stream
                .as_mut()
                .ok_or_else(|| ProtocolError::Invalid("a seed holder without its stream".into()))?;
            let mut block = draw(rng, l);
            block.public = public;
            return Ok(block);
        }
        let data = self.bytes(l.bytes(W::BYTES), net)?;
        Ok(decode_block(&data, l))
    }

    /// This party's share of the next block when it is `words` ring words alone, each
    /// handed to `f` in order: no copy of the block sits beside what `f` builds.
    pub fn take_words_with<W: Word>(
        &mut self,
        words: usize,
        net: &mut dyn Transport,
        mut f: impl FnMut(W),
    ) -> R<()> {
        if let Some(rng) = self.stream.as_mut() {
            for_each_random_word(rng, words, f);
            return Ok(());
        }
        let data = self.bytes(words * W::BYTES, net)?;
        data.bytes()
            .chunks_exact(W::BYTES)
            .for_each(|c| f(W::read(c)));
        Ok(())
    }

    /// The next `len` bytes of the current instruction's record: one block, which never
    /// spans two parts (the dealer cuts chunks between blocks).
    fn bytes(&mut self, len: usize, net: &mut dyn Transport) -> R<Record> {
        if len == 0 {
            return Ok(Record::default());
        }
        let (dealer, index) = (self.dealer, self.index);
        let short = || ProtocolError::Peer {
            party: dealer,
            what: format!("the dealer sent too little material for instruction {index}"),
        };
        loop {
            if let Some(front) = self.parts.front() {
                if self.at < front.len() {
                    let data = front.part(self.at, len).ok_or_else(short)?;
                    self.at += len;
                    return Ok(data);
                }
                self.parts.pop_front();
                self.at = 0;
                continue;
            }
            if let Some(e) = &self.broken {
                return Err(ProtocolError::Peer {
                    party: dealer,
                    what: format!(
                        "the dealer's material for instruction {index} did not come: {e}"
                    ),
                });
            }
            if self.complete {
                return Err(short());
            }
            self.more(net);
        }
    }

    /// Take what came of the current instruction's record since it was last looked at
    /// (another copy may have read the chunks); if nothing did, read one more chunk (or
    /// have the VM read it) first.
    fn more(&mut self, net: &mut dyn Transport) {
        if self.arrived() {
            return;
        }
        let read = match &self.reader {
            Reader::Own => match self.inbox() {
                Some(mut inbox) => inbox.more(net),
                None => Err("no chunks come to this party".into()),
            },
            Reader::Vm(f) => f.fetch(),
        };
        match read {
            Ok(()) => {
                self.arrived();
            }
            Err(e) => self.broken = Some(e),
        }
    }

    /// Take the parts of the current instruction's record that came; whether any did or
    /// the record is complete.
    fn arrived(&mut self) -> bool {
        let index = self.index;
        let Some((parts, complete)) = self.inbox().map(|mut i| i.parts(index)) else {
            return true;
        };
        let any = !parts.is_empty();
        self.parts.extend(parts);
        self.complete = complete;
        any || complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport whose every read fails at once: a closed port.
    fn closed_port() -> crate::mux::Port {
        let (events, _) = std::sync::mpsc::channel();
        let (_, replies) = std::sync::mpsc::channel();
        crate::mux::Port::new(1, 2, events, replies)
    }

    /// A copy begun for an owner's input reads no chunk, however far into the program
    /// it stands; any other copy reads every chunk before its instruction first (here
    /// from a dealer that is gone, so it breaks).
    #[test]
    fn an_input_begun_early_reads_none_of_the_material_before_it() {
        let mut source = Source::new(2, None, true);
        let task = crate::task_id(0, 40);
        let input = source.fork(task, &mut closed_port(), closed_port().fetcher(), false);
        assert!(input.broken.is_none() && !input.complete);
        let product = source.fork(task, &mut closed_port(), closed_port().fetcher(), true);
        assert!(product.broken.is_some());
        // A seed holder's input has no chunks to wait for.
        let mut seeded = Source::new(2, Some([1; 32]), false);
        let input = seeded.fork(task, &mut closed_port(), closed_port().fetcher(), false);
        assert!(input.complete && input.stream.is_some());
    }

    fn layout() -> Layout {
        Layout::words(DRAW_PIECE / 16 * 3 + 5).seg(77).seg(130)
    }

    #[test]
    fn words_drawn_in_pieces_read_as_one_fill() {
        let n = DRAW_PIECE / 16 * 3 + 5;
        let mut one = vec![0u8; 16 * n];
        Stream::new([7; 32], 2).fill_bytes(&mut one);
        let whole: Vec<u128> = one.chunks_exact(16).map(u128::read).collect();
        let mut rng = Stream::new([7; 32], 2);
        assert_eq!(random_words::<u128>(&mut rng, n), whole);
        // And the stream goes on where one fill would have left it.
        let mut after = Stream::new([7; 32], 2);
        after.fill_bytes(&mut one);
        assert_eq!(rng.next_u64(), after.next_u64());
    }

    #[test]
    fn a_share_removed_as_drawn_is_the_drawn_share_removed() {
        let l = layout();
        let mut rng = Stream::new([3; 32], 0);
        let block: Block<u64> = draw(&mut rng, &l);
        let mut expected = block.clone();
        remove_share(&mut expected, &draw(&mut Stream::new([4; 32], 1), &l));
        let mut got = block;
        remove_drawn_share(&mut got, &mut Stream::new([4; 32], 1), &l);
        assert_eq!((got.words, got.segs), (expected.words, expected.segs));
    }

    #[test]
    fn a_block_encodes_to_its_length() {
        let l = layout();
        let block: Block<u128> = draw(&mut Stream::new([5; 32], 0), &l);
        let mut out = vec![1, 2, 3];
        encode_block(&block, &mut out);
        assert_eq!(out.len(), 3 + l.bytes(16));
    }
}
