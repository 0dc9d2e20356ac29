//! Scalars from URL text or JSON values, per the proto3 JSON mapping, with
//! range checks. Errors are reasons for a person ("`300` is out of range for
//! int32"); the caller adds the field path.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use prost_reflect::{EnumDescriptor, Kind, Value};

/// One scalar's input: text from the path or query, or a JSON body value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// Already percent-decoded URL text.
    Text(&'a str),
    /// A JSON value from the body.
    Json(&'a serde_json::Value),
}

impl<'a> Input<'a> {
    /// The text of URL input or of a JSON string.
    pub(crate) fn text(self) -> Option<&'a str> {
        match self {
            Input::Text(text) => Some(text),
            Input::Json(serde_json::Value::String(text)) => Some(text.as_str()),
            Input::Json(_) => None,
        }
    }
}

/// Parses a scalar or enum of `kind` (never a message).
pub(crate) fn scalar(kind: &Kind, input: Input<'_>) -> Result<Value, String> {
    Ok(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(integer(input, "int32", i32::MIN.into(), i32::MAX.into())? as i32)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(integer(input, "uint32", 0, u32::MAX.into())? as u32)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(integer(input, "int64", i64::MIN.into(), i64::MAX.into())? as i64)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(integer(input, "uint64", 0, u64::MAX.into())? as u64)
        }
        Kind::Double => Value::F64(float(input, false)?),
        Kind::Float => Value::F32(float(input, true)? as f32),
        Kind::Bool => Value::Bool(boolean(input)?),
        Kind::String => Value::String(string(input)?.to_owned()),
        Kind::Bytes => Value::Bytes(bytes(string(input)?)?),
        Kind::Enum(descriptor) => Value::EnumNumber(enumeration(descriptor, input)?),
        Kind::Message(message) => {
            return Err(format!("{} is not a scalar", message.full_name()));
        }
    })
}

fn describe(input: Input<'_>) -> String {
    match input {
        Input::Text(text) => format!("`{text}`"),
        Input::Json(serde_json::Value::String(text)) => format!("`{text}`"),
        Input::Json(value) => format!("`{value}`"),
    }
}

fn integer(input: Input<'_>, name: &str, min: i128, max: i128) -> Result<i128, String> {
    let value = match (input.text(), input) {
        (Some(text), _) => parse_integer_text(text)
            .ok_or_else(|| format!("{} is not an integer", describe(input)))?,
        (None, Input::Json(serde_json::Value::Number(number))) => {
            if let Some(value) = number.as_i64() {
                value.into()
            } else if let Some(value) = number.as_u64() {
                value.into()
            } else {
                match number.as_f64() {
                    // proto3 JSON accepts `1e3` and `5.0` for integers.
                    Some(value) if value.fract() == 0.0 && value.abs() < 1e20 => value as i128,
                    Some(value) if value.fract() == 0.0 => i128::MAX,
                    _ => return Err(format!("`{number}` is not an integer")),
                }
            }
        }
        _ => return Err(format!("{} is not a number", describe(input))),
    };
    if value < min || value > max {
        return Err(format!(
            "{} is out of range for {name} ({min} to {max})",
            describe(input)
        ));
    }
    Ok(value)
}

/// Decimal integers with an optional sign; over-long digit strings saturate
/// so that they fail the range check rather than the syntax check.
fn parse_integer_text(text: &str) -> Option<i128> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<i128>() {
        Ok(value) => Some(value),
        Err(_) if text.starts_with('-') => Some(i128::MIN),
        Err(_) => Some(i128::MAX),
    }
}

fn float(input: Input<'_>, single: bool) -> Result<f64, String> {
    let value = match (input.text(), input) {
        (None, Input::Json(serde_json::Value::Number(number))) => number
            .as_f64()
            .ok_or_else(|| format!("`{number}` is not a number"))?,
        (Some(text), _) => match text {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ if !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
            {
                text.parse::<f64>()
                    .map_err(|_| format!("{} is not a number", describe(input)))?
            }
            _ => return Err(format!("{} is not a number", describe(input))),
        },
        _ => return Err(format!("{} is not a number", describe(input))),
    };
    if single && value.is_finite() && value.abs() > f64::from(f32::MAX) {
        return Err(format!("{} is out of range for float", describe(input)));
    }
    Ok(value)
}

fn boolean(input: Input<'_>) -> Result<bool, String> {
    match input {
        Input::Json(serde_json::Value::Bool(value)) => Ok(*value),
        Input::Text("true" | "1") => Ok(true),
        Input::Text("false" | "0") => Ok(false),
        _ => Err(format!("{} is not true or false", describe(input))),
    }
}

fn string(input: Input<'_>) -> Result<&str, String> {
    input
        .text()
        .ok_or_else(|| format!("{} is not a string", describe(input)))
}

/// Standard or URL-safe base64, padded or not, as proto3 JSON allows.
fn bytes(text: &str) -> Result<Bytes, String> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engine = if text.contains(['-', '_']) {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
    } else {
        GeneralPurpose::new(&alphabet::STANDARD, config)
    };
    engine
        .decode(text)
        .map(Bytes::from)
        .map_err(|_| "is not valid base64".to_owned())
}

fn enumeration(descriptor: &EnumDescriptor, input: Input<'_>) -> Result<i32, String> {
    let number =
        match (input.text(), input) {
            (Some(text), _) => {
                if let Some(value) = descriptor.get_value_by_name(text) {
                    return Ok(value.number());
                }
                match (input, parse_integer_text(text)) {
                    (Input::Text(_), Some(number)) => number,
                    _ => return Err(unknown_enum(descriptor, input)),
                }
            }
            (None, Input::Json(serde_json::Value::Number(number))) => number
                .as_i64()
                .map(i128::from)
                .ok_or_else(|| unknown_enum(descriptor, input))?,
            _ => return Err(unknown_enum(descriptor, input)),
        };
    i32::try_from(number)
        .ok()
        .filter(|number| descriptor.get_value(*number).is_some())
        .ok_or_else(|| unknown_enum(descriptor, input))
}

fn unknown_enum(descriptor: &EnumDescriptor, input: Input<'_>) -> String {
    let names: Vec<String> = descriptor.values().map(|v| v.name().to_owned()).collect();
    format!("{} is not one of {}", describe(input), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(scalar(&Kind::Int32, Input::Text("-5")), Ok(Value::I32(-5)));
        assert_eq!(
            scalar(&Kind::Int64, Input::Json(&json!("9007199254740993"))),
            Ok(Value::I64(9_007_199_254_740_993))
        );
        assert_eq!(
            scalar(&Kind::Uint32, Input::Json(&json!(1e3))),
            Ok(Value::U32(1000))
        );
        let error = scalar(&Kind::Int32, Input::Text("3000000000")).expect_err("range");
        assert!(error.contains("out of range for int32"), "{error}");
        let error = scalar(&Kind::Uint64, Input::Text("-1")).expect_err("range");
        assert!(error.contains("out of range"), "{error}");
        let error = scalar(&Kind::Int32, Input::Json(&json!(1.5))).expect_err("fraction");
        assert!(error.contains("not an integer"), "{error}");
        let error = scalar(&Kind::Int32, Input::Text("12a")).expect_err("syntax");
        assert!(error.contains("not an integer"), "{error}");
        let error = scalar(
            &Kind::Int64,
            Input::Text("99999999999999999999999999999999999999999"),
        )
        .expect_err("huge");
        assert!(error.contains("out of range"), "{error}");
    }

    #[test]
    fn floats_bools_bytes_and_strings() {
        assert_eq!(
            scalar(&Kind::Double, Input::Text("1.5")),
            Ok(Value::F64(1.5))
        );
        assert!(matches!(
            scalar(&Kind::Float, Input::Json(&json!("Infinity"))),
            Ok(Value::F32(v)) if v.is_infinite()
        ));
        assert!(scalar(&Kind::Double, Input::Text("inf")).is_err());
        assert!(scalar(&Kind::Float, Input::Json(&json!(1e300))).is_err());
        assert_eq!(
            scalar(&Kind::Bool, Input::Text("true")),
            Ok(Value::Bool(true))
        );
        assert!(scalar(&Kind::Bool, Input::Json(&json!("true"))).is_err());
        assert_eq!(
            scalar(&Kind::Bytes, Input::Text("aGk")),
            Ok(Value::Bytes(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            scalar(&Kind::Bytes, Input::Json(&json!("_-8="))),
            Ok(Value::Bytes(Bytes::from_static(&[0xff, 0xef])))
        );
        assert!(scalar(&Kind::String, Input::Json(&json!(5))).is_err());
    }
}
