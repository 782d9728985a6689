//! How the dealer's material travels: as a stream of chunks, cut between blocks.
//!
//! The dealer walks the program beside the parties. Whenever the records it has made
//! reach [`CHUNK`] bytes and the next block of material begins, it sends them as one
//! chunk (a long message, [`send_long`]) and goes on; the last chunk of a run says so. An
//! instruction's record may so span chunks: a huge gate deals its material as several
//! blocks (`fss` keys, a piece of elements each), and a party reads them as it goes. A
//! party reads chunks until every instruction before the one it begins is dealt (not
//! for an owner's input: [`super::prep::Source::fork`]), reads
//! more when the running instruction needs a block not here yet, and drops each block
//! once taken. So neither side holds more than a few chunks and the blocks of the
//! instructions running at the same time, and a slow party stops the dealer through the
//! connection's flow control, not by buffering: the whole material of ResNet-18 under
//! `fss` (14 GB) never sits in one place.
//!
//! A chunk is `last (u32: 1 on a run's last chunk, else 0)`, `through (u32: every
//! instruction below it is dealt; its records may begin this one)`, then records
//! `index (u32), length (u32), bytes`, at most one per instruction, in increasing order.
//! Before the first chunk each party gets one start message (its seed, or the last
//! party's set-up material).

use crate::net::{long_message_bytes, receive_long, send_long, Stats, Transport};
use crate::{PartyId, ProtocolError};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

type R<T> = Result<T, ProtocolError>;

/// Bytes of records after which the dealer sends a chunk (at the next block): small against the memory bound, large against the 16 bytes of framing.
#[cfg(not(test))]
const CHUNK: usize = 4 << 20;
/// The unit tests' scripts are small: cut them into many chunks.
#[cfg(test)]
const CHUNK: usize = 1 << 10;

/// Bytes before a chunk's records.
const HEADER: usize = 8;

/// Whether a chunk holding `pending` bytes of records goes out before the next block: the
/// one rule of the generating dealer and its counting twin.
fn full(pending: usize) -> bool {
    pending >= CHUNK
}

/// A chunk's records being written: per instruction with material, its index, its
/// length and its bytes, written in place after room for the header.
#[derive(Debug)]
pub(crate) struct Records {
    out: Vec<u8>,
    /// Where the open record's header starts, and its instruction.
    open: Option<(usize, usize)>,
    /// The first instruction whose record passed what its u32 length can say.
    too_long: Option<usize>,
}

impl Default for Records {
    fn default() -> Self {
        Records {
            out: vec![0; HEADER],
            open: None,
            too_long: None,
        }
    }
}

impl Records {
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

    /// Bytes of records so far (headers included).
    pub fn len(&self) -> usize {
        self.out.len() - HEADER
    }

    /// The chunk: `last` says it ends the run, `through` that every instruction below it
    /// is dealt (and the next block is `through`'s). An error where one instruction's material passed 4 GiB, which a
    /// record's length cannot say.
    pub fn finish(mut self, last: bool, through: usize) -> R<Vec<u8>> {
        self.close();
        if let Some(index) = self.too_long {
            return Err(ProtocolError::Invalid(format!(
                "the dealer's material for instruction {index} passes the 4 GiB one record \
                 carries; run a smaller batch"
            )));
        }
        self.out[..4].copy_from_slice(&u32::from(last).to_le_bytes());
        let through = u32::try_from(through).unwrap_or(u32::MAX);
        self.out[4..8].copy_from_slice(&through.to_le_bytes());
        Ok(self.out)
    }
}

/// One block of the dealer's material as its counting twin sees it: the instruction, its
/// bytes to the last party, and how many of them are public (to every party).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dealt {
    pub index: usize,
    pub bytes: usize,
    pub public: usize,
}

/// The bytes of the chunks of one run whose blocks are `blocks` (in walking order), cut
/// as [`Outbox`] cuts them: to the last party, or with `public` the chunks of the public
/// records (the counting twin of the generating dealer).
pub(crate) fn chunk_bytes(blocks: &[Dealt], public: bool) -> u64 {
    let mut total = 0;
    let (mut pending, mut mine) = (0usize, 0usize);
    // The instruction of the chunk's open record, to the last party and public.
    let (mut open, mut open_public) = (None, None);
    for b in blocks {
        if full(pending) {
            total += long_message_bytes(HEADER + mine);
            (pending, mine, open, open_public) = (0, 0, None, None);
        }
        let header = |open: &mut Option<usize>| {
            if *open == Some(b.index) {
                0
            } else {
                *open = Some(b.index);
                8
            }
        };
        let last = header(&mut open) + b.bytes;
        pending += last;
        mine += match public {
            false => last,
            true if b.public > 0 => header(&mut open_public) + b.public,
            true => 0,
        };
    }
    total + long_message_bytes(HEADER + mine)
}

/// The dealer's side: the records of the chunk being made, and the link they leave by.
pub(crate) struct Outbox {
    net: Option<Box<dyn Transport>>,
    /// The party that receives the corrections (the last computing party).
    last_party: PartyId,
    /// Parties that receive the public records too (`fss`'s correction words), with a
    /// copy of the chunk's public records each.
    public_to: Vec<PartyId>,
    last: Records,
    public: Records,
    /// Why sending failed: nothing more is made or sent, and the run ends with it.
    failed: Option<String>,
}

impl Outbox {
    /// An outbox to `last_party`, and the public records to `public_to` too.
    pub fn new(last_party: PartyId, public_to: Vec<PartyId>) -> Outbox {
        Outbox {
            net: None,
            last_party,
            public_to,
            last: Records::default(),
            public: Records::default(),
            failed: None,
        }
    }

    /// Start dealing over `net` (the dealer is its last party): each party's start
    /// message goes out at once.
    pub fn attach(&mut self, mut net: Box<dyn Transport>, start: Vec<(PartyId, Vec<u8>)>) {
        if let Err(e) = send_long(net.as_mut(), start) {
            self.failed = Some(e.to_string());
        }
        self.net = Some(net);
    }

    pub fn stats(&self) -> Stats {
        self.net.as_ref().map(|n| n.stats()).unwrap_or_default()
    }

    pub fn abort(&mut self, reason: &str) {
        if let Some(net) = self.net.as_mut() {
            net.abort(reason);
        }
    }

    /// Whether making more material is pointless (sending failed).
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Before a block of instruction `index`: send the chunk made so far if it is full.
    fn before(&mut self, index: usize) {
        if full(self.last.len()) {
            if let Err(e) = self.flush(false, index) {
                self.failed = Some(e.to_string());
            }
        }
    }

    /// Append a block to instruction `index`'s record for the last party.
    pub fn append(&mut self, index: usize, data: impl FnOnce(&mut Vec<u8>)) {
        self.before(index);
        if self.failed.is_none() {
            self.last.append(index, data);
        }
    }

    /// Append `bytes` to instruction `index`'s public record (every receiver's), after
    /// its [`Outbox::append`].
    pub fn append_public(&mut self, index: usize, bytes: &[u8]) {
        if self.failed.is_none() && !self.public_to.is_empty() {
            self.public
                .append(index, |out| out.extend_from_slice(bytes));
        }
    }

    /// Send the run's last chunk; the error of any send that failed in the run.
    pub fn end_run(&mut self) -> R<()> {
        if let Some(e) = &self.failed {
            return Err(ProtocolError::Invalid(format!(
                "the dealer could not send its material: {e}"
            )));
        }
        self.flush(true, usize::MAX)
    }

    fn flush(&mut self, last: bool, through: usize) -> R<()> {
        let net = self.net.as_mut().ok_or_else(|| {
            ProtocolError::Invalid("the dealer has no parties to send its material to".into())
        })?;
        let mut out = Vec::with_capacity(1 + self.public_to.len());
        if let Some((&first, rest)) = self.public_to.split_first() {
            let public = std::mem::take(&mut self.public).finish(last, through)?;
            out.extend(rest.iter().map(|&p| (p, public.clone())));
            out.push((first, public));
        }
        let records = std::mem::take(&mut self.last).finish(last, through)?;
        out.push((self.last_party, records));
        Ok(send_long(net.as_mut(), out)?)
    }
}

/// Bytes within a chunk that came (one instruction's record, or a part of it), or bytes
/// of their own: shared, never copied.
#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    chunk: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Record {
    pub fn bytes(&self) -> &[u8] {
        self.chunk.get(self.range.clone()).unwrap_or(&[])
    }

    /// Bytes `at..at + len` of this record, if it has them.
    pub fn part(&self, at: usize, len: usize) -> Option<Record> {
        let start = self.range.start.checked_add(at)?;
        let end = start.checked_add(len).filter(|&e| e <= self.range.end)?;
        Some(Record {
            chunk: self.chunk.clone(),
            range: start..end,
        })
    }
}

impl From<Vec<u8>> for Record {
    fn from(bytes: Vec<u8>) -> Record {
        Record {
            range: 0..bytes.len(),
            chunk: Arc::new(bytes),
        }
    }
}

impl std::ops::Deref for Record {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

/// A received chunk, parsed: its records by instruction, and how far it reaches.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub records: Vec<(usize, Record)>,
    /// Every instruction below this is dealt; `None` on a run's last chunk.
    pub through: Option<usize>,
}

impl Chunk {
    /// Parse a chunk that follows one reaching `from`; an error names the dealer.
    pub fn decode(bytes: Vec<u8>, from: usize, dealer: PartyId) -> R<Chunk> {
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
        let through = match (u32_at(0)?, u32_at(4)?) {
            (1, _) => None,
            (0, t) if t >= from => Some(t),
            (0, t) => return Err(bad(&format!("a chunk reaching back to instruction {t}"))),
            (flag, _) => return Err(bad(&format!("a chunk flagged {flag}"))),
        };
        let mut spans = Vec::new();
        let mut next = from;
        let mut at = HEADER;
        while at < bytes.len() {
            let (index, len) = (u32_at(at)?, u32_at(at + 4)?);
            if index < next {
                return Err(bad(&format!("instruction {index} twice or out of order")));
            }
            if through.is_some_and(|t| index > t) {
                return Err(bad(&format!(
                    "instruction {index} in a chunk that ends before it"
                )));
            }
            let end = (at + 8)
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| bad("a length past its end"))?;
            spans.push((index, at + 8..end));
            next = index + 1;
            at = end;
        }
        let chunk = Arc::new(bytes);
        let records = spans
            .into_iter()
            .map(|(i, range)| {
                (
                    i,
                    Record {
                        chunk: chunk.clone(),
                        range,
                    },
                )
            })
            .collect();
        Ok(Chunk { records, through })
    }
}

/// A party's side: the records received and not yet taken, per instruction the parts of
/// its record in the order they came (one per chunk it spans).
#[derive(Debug)]
pub(crate) struct Inbox {
    dealer: PartyId,
    pending: BTreeMap<usize, Vec<Record>>,
    /// Every instruction below this is dealt.
    through: usize,
    /// The run's last chunk came.
    done: bool,
    /// Traffic of the chunks: preprocessing, not online.
    traffic: Stats,
    /// Why a chunk could not be read: every later read fails with it.
    broken: Option<String>,
}

impl Inbox {
    pub fn new(dealer: PartyId) -> Inbox {
        Inbox {
            dealer,
            pending: BTreeMap::new(),
            through: 0,
            done: false,
            traffic: Stats::default(),
            broken: None,
        }
    }

    /// The next run's chunks follow.
    pub fn next_run(&mut self) {
        self.pending.clear();
        self.through = 0;
        self.done = false;
    }

    pub fn traffic(&self) -> Stats {
        self.traffic
    }

    /// Read chunks from `net` until every instruction below `index` is dealt; an error
    /// text if the dealer's chunks could not be read.
    pub fn reach(&mut self, index: usize, net: &mut dyn Transport) -> Result<(), String> {
        while !self.done && self.through < index {
            self.more(net)?;
        }
        Ok(())
    }

    /// Read the next chunk from `net`, if the run's last has not come (a copy running
    /// beside the asker may have read it meanwhile).
    pub fn more(&mut self, net: &mut dyn Transport) -> Result<(), String> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if self.done {
            return Ok(());
        }
        self.receive(net).map_err(|e| {
            let e = e.to_string();
            self.broken = Some(e.clone());
            e
        })
    }

    /// Read the rest of the run's chunks, dropping what no instruction took: a party may
    /// need none of the last chunks (they hold the other party's material, or only the
    /// run's end), yet the next run's chunks must start afresh, and the dealer must not
    /// write to a party that has left.
    pub fn finish(&mut self, net: &mut dyn Transport) -> Result<(), String> {
        while !self.done {
            self.more(net)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// The parts of instruction `index`'s record that came, and whether they are all of
    /// it.
    pub fn parts(&mut self, index: usize) -> (Vec<Record>, bool) {
        let parts = self.pending.remove(&index).unwrap_or_default();
        (parts, self.done || self.through > index)
    }

    fn receive(&mut self, net: &mut dyn Transport) -> R<()> {
        let before = net.stats();
        let msg = receive_long(net, self.dealer)?;
        self.traffic = self.traffic.plus(net.stats().since(before));
        let chunk = Chunk::decode(msg, self.through, self.dealer)?;
        for (index, record) in chunk.records {
            self.pending.entry(index).or_default().push(record);
        }
        match chunk.through {
            Some(t) => self.through = t,
            None => self.done = true,
        }
        Ok(())
    }
}
