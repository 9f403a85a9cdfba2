//! confusion_accel: an optional compiled decoder for `flows.parsing.batches.parse_batch`.
//!
//! `decode_columns` reads a whole batch of JSON records into the columns the fast path builds
//! (ids, truth codes, times, per-model predicted codes and score matrices, the label table) in
//! one call, or returns None when any record is not of the plain shape, and the pure-Python path
//! (the reference) then parses the batch as it always does. The pure-Python path is the default
//! whenever this module is absent; both give identical columns (tests/unit/test_accel.py).

mod batch;
mod json;
mod times;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

use batch::{columns, Rules, Scalar};

fn raw<T: Copy>(values: &[T]) -> &[u8] {
    // Plain numbers (i32, i64, f64): their bytes in native order, as numpy's frombuffer reads them.
    let len = std::mem::size_of_val(values);
    // SAFETY: the slice is valid for `len` bytes and every byte of these types is initialised.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), len) }
}

/// Columns of a batch, or None (parse it in Python).
///
/// Returns ``(labels, ids, truth, ts, missing_ts, models, shape)``: ``truth`` (int32), ``ts``
/// (int64, 0 where the record has no ``ts``; ``missing_ts`` lists those rows) as bytearrays;
/// ``models`` a list of ``(name, pred int32, score_keys or None, scores float64 or None, bare,
/// key_order or None)``; ``shape`` the model names every record has in one order, or None.
#[pyfunction]
#[pyo3(signature = (values, max_bytes, max_models, reserved=None))]
fn decode_columns<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyList>,
    max_bytes: usize,
    max_models: usize,
    reserved: Option<&str>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let mut held: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(values.len());
    for v in values.iter() {
        match v.downcast_into::<PyBytes>() {
            Ok(b) => held.push(b),
            Err(_) => return Ok(None),
        }
    }
    let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let rules = Rules {
        max_bytes,
        max_models,
        reserved,
    };
    let Ok(out) = columns(&slices, &rules) else {
        return Ok(None);
    };
    let labels = PyList::new(py, out.table.labels.iter().map(|l| l.as_ref()))?;
    let ids = PyList::new(
        py,
        out.records.iter().map(|r| match r.id {
            Scalar::Str(s) => PyString::new(py, s).into_any(),
            Scalar::Int(i) => {
                let Ok(int) = i.into_pyobject(py);
                int.into_any()
            }
        }),
    )?;
    let mut missing: Vec<usize> = Vec::new();
    let ts: Vec<i64> = out
        .records
        .iter()
        .enumerate()
        .map(|(row, r)| {
            r.ts.unwrap_or_else(|| {
                missing.push(row);
                0
            })
        })
        .collect();
    let models = PyList::empty(py);
    for m in &out.models {
        let (keys, scores) = match &m.scores {
            Some((keys, scores)) => (
                Some(PyList::new(py, keys)?),
                Some(PyByteArray::new(py, raw(scores))),
            ),
            None => (None, None),
        };
        let key_order = match &m.key_order {
            Some(order) => Some(PyTuple::new(py, order)?),
            None => None,
        };
        models.append((
            m.name,
            PyByteArray::new(py, raw(&m.pred)),
            keys,
            scores,
            m.bare,
            key_order,
        ))?;
    }
    let shape = match &out.shape {
        Some(names) => Some(PyTuple::new(py, names)?),
        None => None,
    };
    let result = (
        labels,
        ids,
        PyByteArray::new(py, raw(&out.truth)),
        PyByteArray::new(py, raw(&ts)),
        missing,
        models,
        shape,
    );
    Ok(Some(result.into_pyobject(py)?))
}

#[pymodule]
fn confusion_accel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_columns, m)?)?;
    Ok(())
}
