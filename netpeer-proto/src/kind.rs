//! [`Kind`]: the application-chosen kind of a message or request.

use std::{borrow::Borrow, fmt, ops::Deref};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// The application-chosen kind of a message or request (`"chat"`, `"move"`): a string
/// that reads like a `&str` (it derefs to one and compares with `str`, `&str` and
/// `String`) and costs no allocation up to 23 bytes, so that receiving a message does
/// not allocate for its kind. Longer kinds are shared: cloning one is a reference-count
/// increment. On the wire it is a CBOR text string.
///
/// ```
/// use netpeer_proto::Kind;
///
/// let kind = Kind::from("chat");
/// assert_eq!(kind, "chat");
/// assert!(kind.starts_with("ch"));
/// match kind.as_str() {
///     "chat" => {}
///     other => panic!("{other}"),
/// }
/// assert_eq!(String::from(kind), "chat");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(SmolStr);

impl Kind {
    /// The kind `text`.
    pub fn new(text: &str) -> Self {
        Kind(SmolStr::new(text))
    }

    /// The kind as a `&str`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Kind {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Kind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Kind {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Kind {
    fn from(text: &str) -> Self {
        Kind::new(text)
    }
}

impl From<String> for Kind {
    fn from(text: String) -> Self {
        Kind(SmolStr::from(text))
    }
}

impl From<&String> for Kind {
    fn from(text: &String) -> Self {
        Kind::new(text)
    }
}

impl From<Kind> for String {
    fn from(kind: Kind) -> Self {
        kind.0.into()
    }
}

impl PartialEq<str> for Kind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Kind {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Kind> for str {
    fn eq(&self, other: &Kind) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Kind> for &str {
    fn eq(&self, other: &Kind) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Kind> for String {
    fn eq(&self, other: &Kind) -> bool {
        self == other.as_str()
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SmolStr::deserialize(d).map(Kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_compares_and_encodes_like_a_string() {
        for text in ["", "chat", &"k".repeat(23), &"long-".repeat(20), "ünïcode"] {
            let kind = Kind::from(text);
            assert_eq!(kind, text);
            assert_eq!(text, kind);
            assert_eq!(kind, text.to_owned());
            assert_eq!(&*kind, text);
            assert_eq!(format!("{kind}"), text);
            assert_eq!(format!("{kind:?}"), format!("{text:?}"));
            assert_eq!(Kind::from(text.to_owned()), kind);
            // The same CBOR as a String.
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ciborium::into_writer(&kind, &mut a).unwrap();
            ciborium::into_writer(&text.to_owned(), &mut b).unwrap();
            assert_eq!(a, b);
            assert_eq!(ciborium::from_reader::<Kind, _>(&a[..]).unwrap(), kind);
        }
        let mut kinds = vec![Kind::from("b"), Kind::from("a")];
        kinds.sort();
        assert_eq!(kinds, ["a", "b"]);
    }
}
