//! JSON between Python and serde_json: integers stay exact in both directions (serde_json's
//! `arbitrary_precision` keeps the cloud's digits; big ones cross as decimal text, never as f64).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// A Python object for a JSON value: dict, list, str, int, float, bool or None.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => number_to_py(py, n)?,
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => map_to_py(py, map)?.into_any(),
    })
}

/// A Python dict for a JSON object.
pub fn map_to_py<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, item) in map {
        dict.set_item(key, to_py(py, item)?)?;
    }
    Ok(dict)
}

fn number_to_py<'py>(py: Python<'py>, n: &Number) -> PyResult<Bound<'py, PyAny>> {
    if let Some(i) = n.as_i64() {
        return Ok(i.into_pyobject(py)?.into_any());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into_pyobject(py)?.into_any());
    }
    // Beyond 64 bits, or a float: the text is exactly what the cloud sent.
    let text = n.to_string();
    if text.contains(['.', 'e', 'E']) {
        let f: f64 = text
            .parse()
            .map_err(|_| PyValueError::new_err(format!("JSON number {text} is not a float")))?;
        Ok(PyFloat::new(py, f).into_any())
    } else {
        py.get_type::<PyInt>().call1((text,))
    }
}

/// A JSON value for a Python object; anything but dict (str keys), list, tuple, str, int,
/// float (finite), bool and None is refused with a `TypeError` naming its type.
pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(v.into());
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(v.into());
        }
        let text: String = i.str()?.extract()?;
        return text
            .parse::<Number>()
            .map(Value::Number)
            .map_err(|e| PyValueError::new_err(format!("integer {text} is not JSON: {e}")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{v} is not JSON: NaN and infinities have no JSON form"
            ))
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.extract()?));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return dict_from_py(dict).map(Value::Object);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj
            .try_iter()?
            .map(|item| from_py(&item?))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "a {} is not JSON: use dict, list, str, int, float, bool or None",
        obj.get_type().name()?
    )))
}

/// A JSON object for a Python dict whose keys are all str.
pub fn dict_from_py(dict: &Bound<'_, PyDict>) -> PyResult<Map<String, Value>> {
    let mut map = Map::new();
    for (key, item) in dict.iter() {
        let Ok(key) = key.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "JSON object keys must be str, not {}",
                key.get_type().name()?
            )));
        };
        map.insert(key.extract()?, from_py(&item)?);
    }
    Ok(map)
}

/// A JSON object from an optional Python dict (None means `{}`).
pub fn object_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Map<String, Value>> {
    match obj {
        None => Ok(Map::new()),
        Some(obj) if obj.is_none() => Ok(Map::new()),
        Some(obj) => match obj.cast::<PyDict>() {
            Ok(dict) => dict_from_py(dict),
            Err(_) => Err(PyTypeError::new_err(format!(
                "expected a dict (a JSON object), got {}",
                obj.get_type().name()?
            ))),
        },
    }
}
