//! 160-bit ring identifiers and the wrap-around interval arithmetic Chord is built on.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha1::{Digest, Sha1};

/// Number of bits in an identifier (SHA-1): the ring has 2^M positions and a node M fingers.
pub const M: usize = 160;

/// A position on the ring: a 160-bit unsigned number, stored big-endian so that the derived
/// byte-wise ordering is the numeric ordering.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Id(pub [u8; 20]);

/// Numeric order, which for big-endian bytes is the byte-wise order.
impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.limbs().cmp(&other.limbs())
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Id {
    /// The identifier of arbitrary bytes: their SHA-1 digest (file names, peer ids).
    pub fn hash(bytes: &[u8]) -> Id {
        Id(Sha1::digest(bytes).into())
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Id> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }

    /// Lowercase hex, 40 digits: the form used in every output.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The number as two limbs, high 32 bits and low 128 bits: arithmetic and comparison on
    /// limbs instead of bytes (lookups compare ids all the time; the simulator lives on it).
    fn limbs(&self) -> (u32, u128) {
        let [a, b, c, d, lo @ ..] = self.0;
        (u32::from_be_bytes([a, b, c, d]), u128::from_be_bytes(lo))
    }

    fn from_limbs(hi: u32, lo: u128) -> Id {
        let mut out = [0u8; 20];
        out[..4].copy_from_slice(&hi.to_be_bytes());
        out[4..].copy_from_slice(&lo.to_be_bytes());
        Id(out)
    }

    /// `self + other (mod 2^160)`.
    pub fn wrapping_add(&self, other: &Id) -> Id {
        let ((ah, al), (bh, bl)) = (self.limbs(), other.limbs());
        let (lo, carry) = al.overflowing_add(bl);
        Id::from_limbs(ah.wrapping_add(bh).wrapping_add(carry as u32), lo)
    }

    /// `self - other (mod 2^160)`: the clockwise distance from `other` to `self`.
    pub fn wrapping_sub(&self, other: &Id) -> Id {
        let ((ah, al), (bh, bl)) = (self.limbs(), other.limbs());
        let (lo, borrow) = al.overflowing_sub(bl);
        Id::from_limbs(ah.wrapping_sub(bh).wrapping_sub(borrow as u32), lo)
    }

    /// `2^i` for `i < 160`.
    pub fn pow2(i: usize) -> Id {
        assert!(i < M, "2^{i} does not fit in {M} bits");
        let mut out = [0u8; 20];
        out[19 - i / 8] = 1 << (i % 8);
        Id(out)
    }

    /// The start of finger `i` of a node at `self`: `self + 2^i`.
    pub fn finger_start(&self, i: usize) -> Id {
        self.wrapping_add(&Id::pow2(i))
    }

    /// Clockwise distance from `self` to `to`.
    pub fn distance_to(&self, to: &Id) -> Id {
        to.wrapping_sub(self)
    }

    /// `self ∈ (a, b)`, going clockwise from `a`. With `a == b` this is the whole ring but `a`.
    pub fn in_open(&self, a: &Id, b: &Id) -> bool {
        let d = a.distance_to(self);
        d != Id::default() && (a == b || d < a.distance_to(b))
    }

    /// `self ∈ (a, b]`, going clockwise from `a`. With `a == b` this is the whole ring.
    pub fn in_half_open(&self, a: &Id, b: &Id) -> bool {
        a == b || self == b || self.in_open(a, b)
    }
}

/// 20 raw bytes in binary formats (CBOR on the wire), 40 hex digits in text formats (JSON).
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("20 bytes or 40 hex digits")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Id, E> {
                <[u8; 20]>::try_from(v)
                    .map(Id)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Id::from_hex(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Visitor)
        } else {
            deserializer.deserialize_bytes(Visitor)
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight digits tell ids apart in logs; the full form is in Display.
        write!(f, "Id({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id_from_u64(x: u64) -> Id {
        let mut out = [0u8; 20];
        out[12..].copy_from_slice(&x.to_be_bytes());
        Id(out)
    }

    fn arb_id() -> impl Strategy<Value = Id> {
        any::<[u8; 20]>().prop_map(Id)
    }

    #[test]
    fn serializes_as_hex_in_json() {
        let id = Id::hash(b"abc");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"a9993e364706816aba3e25717850c26c9cd0d89d\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Id>("\"abc\"").is_err());
    }

    #[test]
    fn sha1_of_known_input() {
        assert_eq!(
            Id::hash(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn pow2_and_finger_start_wrap() {
        assert_eq!(Id::pow2(0), id_from_u64(1));
        assert_eq!(Id::pow2(63), id_from_u64(1 << 63));
        let top = Id([0xff; 20]);
        assert_eq!(top.finger_start(0), Id::default());
        assert_eq!(Id::pow2(159).0[0], 0x80);
    }

    #[test]
    fn intervals_on_a_small_example() {
        let (a, b, c) = (id_from_u64(10), id_from_u64(20), id_from_u64(30));
        assert!(b.in_open(&a, &c));
        assert!(!a.in_open(&a, &c));
        assert!(!c.in_open(&a, &c));
        assert!(c.in_half_open(&a, &c));
        // Wrapping interval (c, a) contains nothing between a and c.
        assert!(!b.in_open(&c, &a));
        assert!(Id([0xff; 20]).in_open(&c, &a));
        assert!(Id::default().in_half_open(&c, &a));
        // a == b: the whole ring (but a, for the open form).
        assert!(b.in_half_open(&a, &a));
        assert!(a.in_half_open(&a, &a));
        assert!(b.in_open(&a, &a));
        assert!(!a.in_open(&a, &a));
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in arb_id(), b in arb_id()) {
            prop_assert_eq!(a.wrapping_add(&b).wrapping_sub(&b), a);
        }

        #[test]
        fn limb_arithmetic_matches_schoolbook_bytes(a in arb_id(), b in arb_id()) {
            // The byte-at-a-time subtraction with borrow, as on paper.
            let mut diff = [0u8; 20];
            let mut borrow = 0i16;
            for i in (0..20).rev() {
                let d = a.0[i] as i16 - b.0[i] as i16 - borrow;
                borrow = i16::from(d < 0);
                diff[i] = (d + 256 * borrow) as u8;
            }
            prop_assert_eq!(a.wrapping_sub(&b), Id(diff));
            prop_assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
        }

        #[test]
        fn hex_round_trips(a in arb_id()) {
            prop_assert_eq!(Id::from_hex(&a.to_hex()), Some(a));
        }

        #[test]
        fn distinct_points_split_the_ring(a in arb_id(), b in arb_id(), x in arb_id()) {
            prop_assume!(a != b);
            // Every point is in exactly one of (a, b] and (b, a].
            prop_assert!(x.in_half_open(&a, &b) ^ x.in_half_open(&b, &a));
            // (a, b) is (a, b] without b.
            prop_assert_eq!(x.in_open(&a, &b), x.in_half_open(&a, &b) && x != b);
        }

        #[test]
        fn open_interval_matches_distances(a in arb_id(), b in arb_id(), x in arb_id()) {
            prop_assume!(a != b);
            let inside = a.distance_to(&x) > Id::default() && a.distance_to(&x) < a.distance_to(&b);
            prop_assert_eq!(x.in_open(&a, &b), inside);
        }

        #[test]
        fn finger_starts_grow_clockwise(n in arb_id(), i in 0usize..159) {
            // finger i+1 starts twice as far from n as finger i.
            let d1 = n.distance_to(&n.finger_start(i));
            let d2 = n.distance_to(&n.finger_start(i + 1));
            prop_assert_eq!(d1.wrapping_add(&d1), d2);
            prop_assert!(n.finger_start(i).in_half_open(&n, &n.finger_start(i + 1)));
        }
    }
}
