//! The part of Structured Field Values (RFC 8941) that HTTP Message Signatures need: dictionaries
//! whose members are items or inner lists, with parameters; integers, strings, tokens, byte
//! sequences and booleans (decimals are refused: no signature field uses them).

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64; padding optional on input (RFC 8941 §4.2.7 lets parsers accept either).
const BYTES: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A bare item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BareItem {
    Integer(i64),
    String(String),
    Token(String),
    Bytes(Vec<u8>),
    Boolean(bool),
}

/// Parameters in the order received (the order is part of a signature's base).
pub(crate) type Params = Vec<(String, BareItem)>;

/// An item with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub bare: BareItem,
    pub params: Params,
}

/// A dictionary member's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    Item(Item),
    InnerList(Vec<Item>, Params),
}

/// Input that is not a structured field of the expected shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError;

/// Parses a dictionary (RFC 8941 §4.2.2); a repeated key keeps the last value, in the first one's
/// place.
pub(crate) fn parse_dictionary(input: &str) -> Result<Vec<(String, Member)>, SyntaxError> {
    let mut p = Parser { s: input.as_bytes(), at: 0 };
    let mut out: Vec<(String, Member)> = Vec::new();
    p.skip_sp();
    if p.done() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            if p.peek() == Some(b'(') { p.inner_list()? } else { Member::Item(p.item()?) }
        } else {
            Member::Item(Item { bare: BareItem::Boolean(true), params: p.params()? })
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = member,
            None => out.push((key, member)),
        }
        p.skip_ows();
        if p.done() {
            return Ok(out);
        }
        if !p.eat(b',') {
            return Err(SyntaxError);
        }
        p.skip_ows();
        if p.done() {
            return Err(SyntaxError);
        }
    }
}

/// Serialises an inner list with its parameters (RFC 8941 §4.1.1.1).
pub(crate) fn serialize_inner_list(items: &[Item], params: &Params) -> String {
    let mut out = String::from("(");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_bare(&item.bare, &mut out);
        serialize_params(&item.params, &mut out);
    }
    out.push(')');
    serialize_params(params, &mut out);
    out
}

/// Serialises a byte sequence (`:base64:`).
pub(crate) fn serialize_bytes(bytes: &[u8]) -> String {
    format!(":{}:", BYTES.encode(bytes))
}

/// Serialises a string (quoted, `"` and `\` escaped).
pub(crate) fn serialize_string(s: &str) -> String {
    let mut out = String::new();
    serialize_bare(&BareItem::String(s.to_owned()), &mut out);
    out
}

fn serialize_params(params: &Params, out: &mut String) {
    for (key, value) in params {
        out.push(';');
        out.push_str(key);
        if *value != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare(value, out);
        }
    }
}

fn serialize_bare(item: &BareItem, out: &mut String) {
    match item {
        BareItem::Integer(n) => out.push_str(&n.to_string()),
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        BareItem::Token(t) => out.push_str(t),
        BareItem::Bytes(b) => out.push_str(&serialize_bytes(b)),
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn key(&mut self) -> Result<String, SyntaxError> {
        let start = self.at;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.at += 1,
            _ => return Err(SyntaxError),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)) {
            self.at += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn params(&mut self) -> Result<Params, SyntaxError> {
        let mut params: Params = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') { self.bare_item()? } else { BareItem::Boolean(true) };
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => params.push((key, value)),
            }
        }
        Ok(params)
    }

    fn item(&mut self) -> Result<Item, SyntaxError> {
        let bare = self.bare_item()?;
        Ok(Item { bare, params: self.params()? })
    }

    fn inner_list(&mut self) -> Result<Member, SyntaxError> {
        if !self.eat(b'(') {
            return Err(SyntaxError);
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return Ok(Member::InnerList(items, self.params()?));
            }
            items.push(self.item()?);
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(SyntaxError);
            }
        }
    }

    fn bare_item(&mut self) -> Result<BareItem, SyntaxError> {
        match self.peek() {
            Some(c) if c == b'-' || c.is_ascii_digit() => self.integer(),
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => self.boolean(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => Ok(self.token()),
            _ => Err(SyntaxError),
        }
    }

    fn integer(&mut self) -> Result<BareItem, SyntaxError> {
        let negative = self.eat(b'-');
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = &self.s[start..self.at];
        // Decimals are not used by signature fields; 15 digits is RFC 8941's integer limit.
        if digits.is_empty() || digits.len() > 15 || self.peek() == Some(b'.') {
            return Err(SyntaxError);
        }
        let n: i64 = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).ok_or(SyntaxError)?;
        Ok(BareItem::Integer(if negative { -n } else { n }))
    }

    fn string(&mut self) -> Result<BareItem, SyntaxError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(SyntaxError),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(BareItem::String(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        _ => return Err(SyntaxError),
                    }
                    self.at += 1;
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.at += 1;
                }
                Some(_) => return Err(SyntaxError),
            }
        }
    }

    fn token(&mut self) -> BareItem {
        let start = self.at;
        self.at += 1;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)) {
            self.at += 1;
        }
        BareItem::Token(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn bytes(&mut self) -> Result<BareItem, SyntaxError> {
        self.at += 1;
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
            self.at += 1;
        }
        let encoded = &self.s[start..self.at];
        if !self.eat(b':') {
            return Err(SyntaxError);
        }
        BYTES.decode(encoded).map(BareItem::Bytes).map_err(|_| SyntaxError)
    }

    fn boolean(&mut self) -> Result<BareItem, SyntaxError> {
        self.at += 1;
        let value = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(SyntaxError),
        };
        self.at += 1;
        Ok(BareItem::Boolean(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_input_round_trips() -> Result<(), SyntaxError> {
        let text =
            r#"sig1=("@method" "@path" "content-digest");created=1618884473;keyid="k\"1";nonce="n";alg="ed25519""#;
        let dict = parse_dictionary(text)?;
        assert_eq!(dict.len(), 1);
        let Member::InnerList(items, params) = &dict[0].1 else { return Err(SyntaxError) };
        assert_eq!(items.len(), 3);
        assert_eq!(params[0], ("created".to_owned(), BareItem::Integer(1618884473)));
        assert_eq!(params[1], ("keyid".to_owned(), BareItem::String("k\"1".into())));
        assert_eq!(format!("sig1={}", serialize_inner_list(items, params)), text);
        Ok(())
    }

    #[test]
    fn dictionaries_of_several_members_and_byte_sequences() -> Result<(), SyntaxError> {
        let dict = parse_dictionary("sha-512=:AAE=:, sha-256=:AQID:;x, flag")?;
        assert_eq!(dict[0].1, Member::Item(Item { bare: BareItem::Bytes(vec![0, 1]), params: vec![] }));
        assert_eq!(
            dict[1].1,
            Member::Item(Item {
                bare: BareItem::Bytes(vec![1, 2, 3]),
                params: vec![("x".into(), BareItem::Boolean(true))]
            })
        );
        assert_eq!(dict[2].1, Member::Item(Item { bare: BareItem::Boolean(true), params: vec![] }));
        Ok(())
    }

    #[test]
    fn malformed_input_is_refused() {
        for text in [
            "sig1=(",
            "sig1=(\"a\"",
            "Sig=1",
            "a=1,",
            "a=\"unterminated",
            "a=:!!:",
            "a=1.5",
            "a=1 b=2",
            "a=(\"x\"\"y\")",
        ] {
            assert_eq!(parse_dictionary(text), Err(SyntaxError), "{text}");
        }
    }
}
