//! What a component can be: a ring word (arithmetic sharing) or 64 XOR lanes (boolean
//! sharing). Resharing, input and opening are written once for both.

use crate::word::Word;

/// An element of the group shares live in.
pub trait Elem: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    const BYTES: usize;
    fn plus(self, o: Self) -> Self;
    fn minus(self, o: Self) -> Self;
    fn write(self, out: &mut Vec<u8>);
    fn read(bytes: &[u8]) -> Self;
}

impl<W: Word> Elem for W {
    const BYTES: usize = W::BYTES;
    fn plus(self, o: Self) -> Self {
        Word::add(self, o)
    }
    fn minus(self, o: Self) -> Self {
        Word::sub(self, o)
    }
    fn write(self, out: &mut Vec<u8>) {
        Word::write(self, out)
    }
    fn read(bytes: &[u8]) -> Self {
        Word::read(bytes)
    }
}

/// 64 bits combined by XOR: one element's bit lanes of a boolean sharing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Xor(pub u64);

impl Elem for Xor {
    const BYTES: usize = 8;
    fn plus(self, o: Self) -> Self {
        Xor(self.0 ^ o.0)
    }
    fn minus(self, o: Self) -> Self {
        Xor(self.0 ^ o.0)
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn read(bytes: &[u8]) -> Self {
        Xor(<u64 as Word>::read(bytes))
    }
}

pub fn encode<E: Elem>(v: &[E]) -> Vec<u8> {
    if std::mem::size_of::<E>() == 0 {
        // A twin's words (`word::Shape`): zero bytes of the ring's width, in one go.
        return vec![0; v.len() * E::BYTES];
    }
    let mut out = Vec::with_capacity(v.len() * E::BYTES);
    for e in v {
        e.write(&mut out);
    }
    out
}

pub fn decode<E: Elem>(bytes: &[u8], n: usize) -> Option<Vec<E>> {
    if bytes.len() != n * E::BYTES {
        return None;
    }
    Some(bytes.chunks_exact(E::BYTES).map(E::read).collect())
}
