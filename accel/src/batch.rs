//! One batch of records to columns, exactly as `flows.parsing.batches.parse_batch`'s fast path
//! builds them, or a refusal of the whole batch.
//!
//! This module is plain Rust (no Python), so `cargo test` checks it alone; `lib.rs` turns its
//! result into Python objects.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::json::{Number, Refusal, Scanner};
use crate::times::{rfc3339_ms, MAX_MS, MIN_MS};

/// An id, a label or a bare prediction as decoded: msgspec's `str | int` (a string never empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
}

impl<'a> Scalar<'a> {
    /// As a label: an integer stands for its decimal string.
    pub fn label(self) -> Cow<'a, str> {
        match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            Scalar::Int(v) => Cow::Owned(v.to_string()),
        }
    }
}

/// A model's entry in one record.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A bare label (an integer one keeps its model from being bare, as in Python).
    Label(Scalar<'a>),
    /// A score map: `len` (label, score) pairs from `start` in the batch's `Arena::scores`.
    Map { start: u32, len: u32 },
}

#[derive(Debug)]
pub struct Record<'a> {
    pub id: Scalar<'a>,
    pub label: Cow<'a, str>,
    pub ts: Option<i64>,
    /// `len` (model, entry) pairs from `start` in the batch's `Arena::entries`.
    pub start: u32,
    pub len: u32,
}

/// Every record's entries and score pairs, in one place each: no allocation per record.
#[derive(Default)]
pub struct Arena<'a> {
    pub entries: Vec<(&'a str, Entry<'a>)>,
    pub scores: Vec<(&'a str, f64)>,
}

impl<'a> Arena<'a> {
    pub fn entries_of(&self, r: &Record<'a>) -> &[(&'a str, Entry<'a>)] {
        &self.entries[r.start as usize..(r.start + r.len) as usize]
    }

    pub fn map(&self, start: u32, len: u32) -> &[(&'a str, f64)] {
        &self.scores[start as usize..(start + len) as usize]
    }
}

/// rustc's Fx hash: the labels and model names hashed here are short and not chosen to
/// collide with each other by anyone the job trusts less than its input's producer.
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

impl std::hash::Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;

/// What the caller needs to know to read a batch: the limits the Python path also applies.
pub struct Rules<'r> {
    pub max_bytes: usize,
    pub max_models: usize,
    pub reserved: Option<&'r str>,
}

/// A non-empty string or an integer (a float, `true` or an empty string refuses).
fn scalar<'a>(s: &mut Scanner<'a>) -> Result<Scalar<'a>, Refusal> {
    if s.peek() == Some(b'"') {
        let v = s.string()?;
        return if v.is_empty() {
            Err("empty string")
        } else {
            Ok(Scalar::Str(v))
        };
    }
    match s.number()? {
        Number::Int(v) => Ok(Scalar::Int(v)),
        Number::Float(_) => Err("a float where a string or an integer goes"),
    }
}

fn score(s: &mut Scanner) -> Result<f64, Refusal> {
    Ok(match s.number()? {
        // An integer score is converted as Python's float(int) does: -0 is 0, so +0.0.
        Number::Int(v) if v.unsigned_abs() <= (1u64 << 53) => v as f64,
        Number::Int(_) => return Err("integer score beyond 2**53"),
        Number::Float(v) => v,
    })
}

fn entry<'a>(s: &mut Scanner<'a>, arena: &mut Arena<'a>) -> Result<Entry<'a>, Refusal> {
    if s.peek() != Some(b'{') {
        return Ok(Entry::Label(scalar(s)?));
    }
    s.open_object()?;
    let start = arena.scores.len();
    loop {
        let key = s.string()?;
        if key.is_empty() {
            return Err("empty score label");
        }
        // A repeated label is found in `model_columns`, once per distinct key order.
        s.eat(b':')?;
        let value = score(s)?;
        arena.scores.push((key, value));
        if !s.next_member()? {
            let len = (arena.scores.len() - start) as u32;
            return Ok(Entry::Map {
                start: start as u32,
                len,
            });
        }
    }
}

/// The predictions object; returns where its entries start in the arena and how many.
fn predictions<'a>(
    s: &mut Scanner<'a>,
    rules: &Rules,
    arena: &mut Arena<'a>,
) -> Result<(u32, u32), Refusal> {
    s.open_object()?;
    let start = arena.entries.len();
    loop {
        let model = s.string()?;
        if model.is_empty() || Some(model) == rules.reserved {
            return Err("empty or reserved model name");
        }
        if arena.entries[start..].iter().any(|(m, _)| same(m, model)) {
            return Err("duplicate model");
        }
        s.eat(b':')?;
        let e = entry(s, arena)?;
        arena.entries.push((model, e));
        if !s.next_member()? {
            break;
        }
    }
    let len = arena.entries.len() - start;
    if len > rules.max_models {
        return Err("too many models");
    }
    Ok((start as u32, len as u32))
}

/// One record with exactly the fields `id`, `label`, `predictions` and (optionally) `ts`.
pub fn record<'a>(
    value: &'a [u8],
    rules: &Rules,
    arena: &mut Arena<'a>,
) -> Result<Record<'a>, Refusal> {
    if value.len() > rules.max_bytes {
        return Err("record too long");
    }
    let mut s = Scanner::new(value);
    s.open_object()?;
    let (mut id, mut label, mut ts, mut preds) = (None, None, None, None);
    let mut ts_seen = false;
    loop {
        let key = s.string()?;
        s.eat(b':')?;
        match key.as_bytes() {
            b"id" if id.is_none() => id = Some(scalar(&mut s)?),
            b"label" if label.is_none() => label = Some(scalar(&mut s)?.label()),
            b"ts" if !ts_seen => {
                ts_seen = true;
                ts = match s.peek() {
                    Some(b'"') => Some(rfc3339_ms(s.string()?).ok_or("ts not in the strict form")?),
                    Some(b'n') if s.null() => None,
                    _ => match s.number()? {
                        Number::Int(v) if (MIN_MS..=MAX_MS).contains(&v) => Some(v),
                        _ => return Err("ts out of range or not an integer"),
                    },
                }
            }
            b"predictions" if preds.is_none() => preds = Some(predictions(&mut s, rules, arena)?),
            _ => return Err("unknown or repeated field"),
        }
        if !s.next_member()? {
            break;
        }
    }
    if !s.at_end() {
        return Err("bytes after the record");
    }
    match (id, label, preds) {
        (Some(id), Some(label), Some((start, len))) => Ok(Record {
            id,
            label,
            ts,
            start,
            len,
        }),
        _ => Err("a field is missing"),
    }
}

/// Labels in order of first appearance, as `flows.parsing.labels.LabelTable`.
#[derive(Default)]
pub struct Table<'a> {
    pub labels: Vec<Cow<'a, str>>,
    index: FxMap<Cow<'a, str>, i32>,
}

impl<'a> Table<'a> {
    #[allow(clippy::ptr_arg)] // an owned label is cloned into the table only when new
    pub fn code(&mut self, label: &Cow<'a, str>) -> i32 {
        if let Some(&c) = self.index.get(label) {
            return c;
        }
        let c = self.labels.len() as i32;
        self.labels.push(label.clone());
        self.index.insert(label.clone(), c);
        c
    }
}

/// One model's columns.
pub struct ModelOut<'a> {
    pub name: &'a str,
    pub pred: Vec<i32>,
    /// Score-column labels (sorted) and the (rows, labels) scores, row-major, NaN where none.
    pub scores: Option<(Vec<&'a str>, Vec<f64>)>,
    /// An entry in every row, all bare labels.
    pub bare: bool,
    /// An entry in every row, all score maps with this one key order.
    pub key_order: Option<Vec<&'a str>>,
}

pub struct BatchOut<'a> {
    pub records: Vec<Record<'a>>,
    pub table: Table<'a>,
    pub truth: Vec<i32>,
    pub models: Vec<ModelOut<'a>>,
    /// The model names of every record, when every record names the same ones in one order.
    pub shape: Option<Vec<&'a str>>,
}

/// The label with the highest score, ties going to the label that sorts first (`best_label`).
fn best<'a>(map: &[(&'a str, f64)]) -> &'a str {
    let mut top = map[0];
    for &(k, v) in &map[1..] {
        if v > top.1 || (v == top.1 && k < top.0) {
            top = (k, v);
        }
    }
    top.0
}

/// String equality without a call to memcmp: the labels and model names compared here are
/// short, where the call costs more than the bytes.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= a.len() {
        let x = u64::from_ne_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return false;
        }
        i += 8;
    }
    a[i..].iter().zip(&b[i..]).all(|(x, y)| x == y)
}

/// Whether a score map names a label twice (msgspec would keep the last score; Python's path
/// then judges the record, so this path refuses the batch).
fn repeats_a_label(map: &[(&str, f64)]) -> bool {
    if map.len() < 8 {
        return map
            .iter()
            .enumerate()
            .any(|(i, (k, _))| map[..i].iter().any(|(j, _)| j == k));
    }
    let mut keys: Vec<&str> = map.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

fn same_keys(a: &[(&str, f64)], b: &[(&str, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((x, _), (y, _))| same(x, y))
}

fn model_columns<'a>(
    name: &'a str,
    entries: &[Option<&Entry<'a>>],
    arena: &Arena<'a>,
    table: &mut Table<'a>,
) -> Result<ModelOut<'a>, Refusal> {
    let n = entries.len();
    let present = entries.iter().flatten().count();
    let maps = entries
        .iter()
        .flatten()
        .filter(|e| matches!(e, Entry::Map { .. }))
        .count();
    let mut out = ModelOut {
        name,
        pred: vec![-1; n],
        scores: None,
        bare: false,
        key_order: None,
    };
    if maps == 0 {
        let mut ints = false;
        for (row, e) in entries.iter().enumerate() {
            if let Some(Entry::Label(l)) = e {
                ints |= matches!(l, Scalar::Int(_));
                out.pred[row] = table.code(&l.label());
            }
        }
        // `predicted_codes` calls a model bare only when every entry is a string.
        out.bare = present == n && !ints;
        return Ok(out);
    }
    let first: &[(&'a str, f64)] = entries
        .iter()
        .flatten()
        .find_map(|e| match e {
            Entry::Map { start, len } => Some(arena.map(*start, *len)),
            _ => None,
        })
        .expect("a map is present");
    let uniform = maps == present
        && entries.iter().flatten().all(|e| match e {
            Entry::Map { start, len } => same_keys(arena.map(*start, *len), first),
            _ => false,
        });
    if uniform {
        if repeats_a_label(first) {
            return Err("a score map repeats a label");
        }
        // `_argmax_codes`: every key interned in label order, the first maximum in that order.
        let k = first.len();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| first[a].0.cmp(first[b].0));
        let codes: Vec<i32> = order
            .iter()
            .map(|&j| table.code(&Cow::Borrowed(first[j].0)))
            .collect();
        let mut scores = vec![f64::NAN; n * k];
        for (row, e) in entries.iter().enumerate() {
            if let Some(Entry::Map { start, len }) = e {
                let m = arena.map(*start, *len);
                let cells = &mut scores[row * k..(row + 1) * k];
                let mut top = 0;
                for (col, &j) in order.iter().enumerate() {
                    cells[col] = m[j].1;
                    if cells[col] > cells[top] {
                        top = col;
                    }
                }
                out.pred[row] = codes[top];
            }
        }
        let names = order.iter().map(|&j| first[j].0).collect();
        out.scores = Some((names, scores));
        if present == n {
            out.key_order = Some(first.iter().map(|(key, _)| *key).collect());
        }
        return Ok(out);
    }
    // `_one_by_one` then `_score_matrix`: best labels interned in row order; score columns the
    // sorted union of every map's labels.
    let mut names: Vec<&'a str> = Vec::new();
    for (row, e) in entries.iter().enumerate() {
        match e {
            Some(Entry::Label(l)) => out.pred[row] = table.code(&l.label()),
            Some(Entry::Map { start, len }) => {
                let m = arena.map(*start, *len);
                if repeats_a_label(m) {
                    return Err("a score map repeats a label");
                }
                out.pred[row] = table.code(&Cow::Borrowed(best(m)));
                names.extend(m.iter().map(|(key, _)| *key));
            }
            None => {}
        }
    }
    names.sort_unstable();
    names.dedup();
    let k = names.len();
    let column: FxMap<&str, usize> = names.iter().enumerate().map(|(j, n)| (*n, j)).collect();
    let mut scores = vec![f64::NAN; n * k];
    for (row, e) in entries.iter().enumerate() {
        if let Some(Entry::Map { start, len }) = e {
            for (key, v) in arena.map(*start, *len) {
                scores[row * k + column[key]] = *v;
            }
        }
    }
    out.scores = Some((names, scores));
    Ok(out)
}

/// The batch as columns, or why it goes to the Python parser instead.
pub fn columns<'a>(values: &[&'a [u8]], rules: &Rules) -> Result<BatchOut<'a>, Refusal> {
    let mut arena = Arena::default();
    let mut records: Vec<Record<'a>> = Vec::with_capacity(values.len());
    for v in values {
        records.push(record(v, rules, &mut arena)?);
    }
    let n = records.len();
    let mut table = Table::default();
    let truth: Vec<i32> = records.iter().map(|r| table.code(&r.label)).collect();
    // Models in order of first appearance, and each model's entry per row. Records mostly name
    // the same models in the same order: the model at the same place is tried before the map.
    let mut model_index: FxMap<&'a str, usize> = FxMap::default();
    let mut per_model: Vec<(&'a str, Vec<Option<&Entry<'a>>>)> = Vec::new();
    let mut shape = true;
    for (row, r) in records.iter().enumerate() {
        let entries = arena.entries_of(r);
        if row > 0 && entries.len() != records[0].len as usize {
            shape = false;
        }
        for (place, (model, e)) in entries.iter().enumerate() {
            let m = match per_model.get(place) {
                Some((name, _)) if same(name, model) => place,
                _ => {
                    if row > 0 {
                        shape = false;
                    }
                    *model_index.entry(model).or_insert_with(|| {
                        per_model.push((model, vec![None; n]));
                        per_model.len() - 1
                    })
                }
            };
            per_model[m].1[row] = Some(e);
        }
    }
    let models = per_model
        .iter()
        .map(|(name, entries)| model_columns(name, entries, &arena, &mut table))
        .collect::<Result<_, _>>()?;
    let shape = (shape && n > 0).then(|| {
        arena
            .entries_of(&records[0])
            .iter()
            .map(|(m, _)| *m)
            .collect()
    });
    Ok(BatchOut {
        records,
        table,
        truth,
        models,
        shape,
    })
}
