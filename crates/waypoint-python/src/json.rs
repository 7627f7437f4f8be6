//! Step outputs between Python and the log: a Python value as the JSON the log records (dict
//! with string keys, list, str, int, float, bool, None; anything else is refused, so what a
//! replay gives back is what the step returned), and a recorded JSON value as Python objects.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};
use serde_json::{Map, Number, Value};

/// How deep an output may nest: deeper is refused rather than risking the stack (a list that
/// contains itself would otherwise never end).
const MAX_DEPTH: usize = 256;

/// Why a value is not a JSON value: what was found, where in the value, and why it is refused.
#[derive(Debug)]
pub struct NotJson {
    pub what: String,
    pub path: String,
    pub why: &'static str,
}

impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.what)?;
        if !self.path.is_empty() {
            write!(f, " at {}", self.path)?;
        }
        write!(f, ", {}", self.why)
    }
}

const NOT_A_JSON_TYPE: &str = "which is not a JSON value (dict, list, str, int, float, bool or None)";

/// `value` as a JSON value, or why it is not one.
pub fn to_json(value: &Bound<'_, PyAny>) -> Result<Value, NotJson> {
    let mut path = Vec::new();
    convert(value, &mut path).map_err(|(what, why)| NotJson { what, path: path.concat(), why })
}

fn convert(value: &Bound<'_, PyAny>, path: &mut Vec<String>) -> Result<Value, (String, &'static str)> {
    if path.len() > MAX_DEPTH {
        return Err((format!("a value nested deeper than {MAX_DEPTH} levels"), "which is too deep to record"));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: Python's bool is an int.
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if let Ok(int) = value.cast::<PyInt>() {
        if let Ok(n) = int.extract::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = int.extract::<u64>() {
            return Ok(Value::from(n));
        }
        return Err((format!("the int {}", int), "which is beyond the 64 bits JSON numbers are recorded with"));
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        let x = float.value();
        return Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| (format!("the float {x}"), "which JSON cannot hold"));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return text
            .to_cow()
            .map(|s| Value::String(s.into_owned()))
            .map_err(|_| ("a str".to_owned(), "which is not valid Unicode (it holds a lone surrogate)"));
    }
    if let Ok(list) = value.cast::<PyList>() {
        let mut items = Vec::with_capacity(list.len());
        for (index, item) in list.iter().enumerate() {
            path.push(format!("[{index}]"));
            items.push(convert(&item, path)?);
            path.pop();
        }
        return Ok(Value::Array(items));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut object = Map::new();
        for (key, item) in dict.iter() {
            let Ok(key) = key.cast::<PyString>().map(|k| k.to_string()) else {
                return Err((format!("a dict key of type {}", type_name(&key)), "and JSON keys are str"));
            };
            path.push(format!("[{}]", serde_json::Value::String(key.clone())));
            let converted = convert(&item, path)?;
            path.pop();
            object.insert(key, converted);
        }
        return Ok(Value::Object(object));
    }
    Err((format!("a {}", type_name(value)), NOT_A_JSON_TYPE))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "value".to_owned())
}

/// A recorded JSON value as Python objects.
pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(text) => PyString::new(py, text).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(object) => {
            let dict = PyDict::new(py);
            for (key, item) in object {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
