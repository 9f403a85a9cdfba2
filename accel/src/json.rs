//! A JSON scanner for the one record shape the fast path accepts, and nothing else.
//!
//! It never guesses: whatever it is not sure to read exactly as msgspec and the Python checks
//! would (an escape in a string, a float in an id, a duplicate key, a number that is not finite)
//! is a refusal, and the caller hands the whole batch back to the pure-Python parser, the
//! reference, which then gives each record its verdict and reason.

/// Why a value was refused; only for tests and debugging (the caller never shows it).
pub type Refusal = &'static str;

pub struct Scanner<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const HIGH: u8 = 2; // a byte of a multi-byte UTF-8 character
const REFUSED: u8 = 3; // a backslash or a control character

/// What each byte is inside a string.
const BYTE: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = if c < 0x20 || c == b'\\' as usize {
            REFUSED
        } else if c == b'"' as usize {
            QUOTE
        } else if c >= 0x80 {
            HIGH
        } else {
            PLAIN
        };
        c += 1;
    }
    t
};

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number as written: an integer literal, or anything with a fraction or an exponent.
pub enum Number {
    Int(i64),
    Float(f64),
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    #[inline]
    pub fn ws(&mut self) {
        while self.i < self.b.len() {
            match self.b[self.i] {
                b' ' | b'\t' | b'\n' | b'\r' => self.i += 1,
                _ => break,
            }
        }
    }

    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    pub fn eat(&mut self, c: u8) -> Result<(), Refusal> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err("unexpected byte")
        }
    }

    /// Open an object that must hold at least one member (an empty one refuses).
    pub fn open_object(&mut self) -> Result<(), Refusal> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            return Err("empty object");
        }
        Ok(())
    }

    /// After an object's member: true if another follows (its comma taken), false at the
    /// closing brace (taken).
    pub fn next_member(&mut self) -> Result<bool, Refusal> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(b'}') => {
                self.i += 1;
                Ok(false)
            }
            _ => Err("neither ',' nor '}' after a member"),
        }
    }

    /// Digits from here, each folded into ``acc`` (decimal, wrapping); how many there were.
    fn digit_run(&mut self, acc: &mut u64) -> u32 {
        let mut n = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            *acc = acc.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            n += 1;
            self.i += 1;
        }
        n
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// A string without escapes or control characters, as valid UTF-8.
    pub fn string(&mut self) -> Result<&'a str, Refusal> {
        self.eat(b'"')?;
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut ascii = true;
        loop {
            // One table lookup per byte: most bytes are plain ASCII and only move on.
            while i < b.len() && BYTE[b[i] as usize] == PLAIN {
                i += 1;
            }
            match b.get(i).map(|&c| BYTE[c as usize]) {
                Some(QUOTE) => break,
                Some(HIGH) => {
                    ascii = false;
                    i += 1;
                }
                Some(_) => return Err("escape or control character in a string"),
                None => return Err("unterminated string"),
            }
        }
        let raw = &b[start..i];
        self.i = i + 1;
        if ascii {
            // SAFETY: every byte is below 0x80, so the bytes are valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(raw) });
        }
        std::str::from_utf8(raw).map_err(|_| "bad utf-8")
    }

    /// A number by RFC 8259's grammar; integers must fit in 64 bits, floats must be finite.
    ///
    /// A decimal without exponent, of at most 19 digits that fit in 2**53, is the quotient of
    /// two exact doubles (powers of ten are exact up to 10**22), which IEEE division rounds
    /// correctly (Clinger's fast path): the same double as Python's float() of the text. Others
    /// go to Rust's parser, also correctly rounded.
    pub fn number(&mut self) -> Result<Number, Refusal> {
        self.ws();
        let b = self.b;
        let start = self.i;
        let negative = b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let mut mantissa: u64 = 0;
        let digits = match b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                0
            }
            Some(c) if c.is_ascii_digit() => self.digit_run(&mut mantissa),
            _ => return Err("not a number"),
        };
        let mut fraction = 0u32;
        let mut float = false;
        if b.get(self.i) == Some(&b'.') {
            float = true;
            self.i += 1;
            fraction = self.digit_run(&mut mantissa);
            if fraction == 0 {
                return Err("fraction without digits");
            }
        }
        let mut exponent = false;
        if matches!(b.get(self.i), Some(b'e') | Some(b'E')) {
            float = true;
            exponent = true;
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            if self.digit_run(&mut 0) == 0 {
                return Err("exponent without digits");
            }
        }
        // Leading zeros of a fraction ("0.0001") count as digits here: still exact.
        let exact = digits + fraction <= 19 && mantissa < (1u64 << 53);
        if !float {
            if digits <= 18 {
                let v = mantissa as i64; // < 10**18: fits
                return Ok(Number::Int(if negative { -v } else { v }));
            }
            // The bytes are ASCII digits and a sign: valid UTF-8.
            let text = std::str::from_utf8(&b[start..self.i]).map_err(|_| "bad number")?;
            return text
                .parse::<i64>()
                .map(Number::Int)
                .map_err(|_| "integer beyond 64 bits");
        }
        if !exponent && exact {
            let v = mantissa as f64 / POW10[fraction as usize];
            return Ok(Number::Float(if negative { -v } else { v }));
        }
        let text = std::str::from_utf8(&b[start..self.i]).map_err(|_| "bad number")?;
        let value: f64 = text.parse().map_err(|_| "bad float")?;
        if !value.is_finite() {
            return Err("float not finite");
        }
        Ok(Number::Float(value))
    }

    /// Skip ``null`` if it is next.
    pub fn null(&mut self) -> bool {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }
}
