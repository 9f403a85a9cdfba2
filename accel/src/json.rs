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

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// A string without escapes or control characters, as valid UTF-8.
    pub fn string(&mut self) -> Result<&'a str, Refusal> {
        self.eat(b'"')?;
        let start = self.i;
        let b = self.b;
        let mut ascii = true;
        while self.i < b.len() {
            let c = b[self.i];
            if c == b'"' {
                let raw = &b[start..self.i];
                self.i += 1;
                if ascii {
                    // SAFETY: every byte is below 0x80, so the bytes are valid UTF-8.
                    return Ok(unsafe { std::str::from_utf8_unchecked(raw) });
                }
                return std::str::from_utf8(raw).map_err(|_| "bad utf-8");
            }
            if c == b'\\' {
                return Err("escape in a string");
            }
            if c < 0x20 {
                return Err("control character in a string");
            }
            ascii &= c < 0x80;
            self.i += 1;
        }
        Err("unterminated string")
    }

    /// A number by RFC 8259's grammar; integers must fit in 64 bits, floats must be finite.
    pub fn number(&mut self) -> Result<Number, Refusal> {
        self.ws();
        let b = self.b;
        let start = self.i;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(c) if c.is_ascii_digit() => {
                while matches!(b.get(self.i), Some(c) if c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return Err("not a number"),
        }
        let mut float = false;
        if b.get(self.i) == Some(&b'.') {
            float = true;
            self.i += 1;
            let digits = self.i;
            while matches!(b.get(self.i), Some(c) if c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == digits {
                return Err("fraction without digits");
            }
        }
        if matches!(b.get(self.i), Some(b'e') | Some(b'E')) {
            float = true;
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            let digits = self.i;
            while matches!(b.get(self.i), Some(c) if c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == digits {
                return Err("exponent without digits");
            }
        }
        // The bytes are ASCII digits and signs: valid UTF-8.
        let text = std::str::from_utf8(&b[start..self.i]).map_err(|_| "bad number")?;
        if float {
            let value: f64 = text.parse().map_err(|_| "bad float")?;
            if !value.is_finite() {
                return Err("float not finite");
            }
            Ok(Number::Float(value))
        } else {
            text.parse::<i64>()
                .map(Number::Int)
                .map_err(|_| "integer beyond 64 bits")
        }
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
