//! A small JSON Schema (2020-12) checker for the keywords our schema file uses, so the
//! contract test checks lines against the very file we publish.
//!
//! Supported: `type`, `const`, `enum`, `required`, `properties`, `additionalProperties`
//! (boolean or schema), `items`, `minimum`, `maximum`, `allOf`, `oneOf`,
//! `if`/`then`/`else`, local `$ref` (`#/$defs/...`), and `pattern` for the one pattern
//! the schema has (the timestamp), checked by hand. Annotations (`title`,
//! `description`, `format`, `$schema`, `$id`, `$comment`) are ignored. Any other keyword
//! fails the check: a schema edit that this checker cannot see must not pass silently.

use serde_json::Value;

const TIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$";

pub struct Schema {
    root: Value,
}

impl Schema {
    pub fn new(root: Value) -> Schema {
        Schema { root }
    }

    /// Every violation of `value` against the root schema, as `path: problem`.
    pub fn errors(&self, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(&self.root, value, "$", &mut errors);
        errors
    }

    fn resolve<'a>(&'a self, reference: &str) -> &'a Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local $ref is supported: {reference}"));
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"))
    }

    fn valid(&self, schema: &Value, value: &Value) -> bool {
        let mut errors = Vec::new();
        self.check(schema, value, "", &mut errors);
        errors.is_empty()
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(schema) = schema.as_object() else {
            panic!("schema at {path} is not an object: {schema}");
        };
        for (keyword, arg) in schema {
            match keyword.as_str() {
                "title" | "description" | "format" | "$schema" | "$id" | "$comment" | "$defs" => {}
                // Handled with `if`.
                "then" | "else" => {}
                "$ref" => self.check(self.resolve(arg.as_str().unwrap()), value, path, errors),
                "type" => {
                    let types: Vec<&str> = match arg {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                        _ => panic!("bad type at {path}"),
                    };
                    if !types.iter().any(|t| has_type(value, t)) {
                        errors.push(format!("{path}: {value} is not of type {types:?}"));
                    }
                }
                "const" => {
                    if value != arg {
                        errors.push(format!("{path}: {value} is not {arg}"));
                    }
                }
                "enum" => {
                    if !arg.as_array().unwrap().contains(value) {
                        errors.push(format!("{path}: {value} is not one of {arg}"));
                    }
                }
                "minimum" => {
                    if value.as_f64().is_some_and(|v| v < arg.as_f64().unwrap()) {
                        errors.push(format!("{path}: {value} < {arg}"));
                    }
                }
                "maximum" => {
                    if value.as_f64().is_some_and(|v| v > arg.as_f64().unwrap()) {
                        errors.push(format!("{path}: {value} > {arg}"));
                    }
                }
                "pattern" => {
                    assert_eq!(
                        arg.as_str(),
                        Some(TIME_PATTERN),
                        "unsupported pattern at {path}"
                    );
                    if let Some(s) = value.as_str() {
                        if !is_millisecond_utc(s) {
                            errors.push(format!(
                                "{path}: {s:?} is not RFC 3339 UTC with milliseconds"
                            ));
                        }
                    }
                }
                "required" => {
                    if let Some(object) = value.as_object() {
                        for key in arg.as_array().unwrap() {
                            if !object.contains_key(key.as_str().unwrap()) {
                                errors.push(format!("{path}: missing required {key}"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let Some(object) = value.as_object() {
                        for (key, sub) in arg.as_object().unwrap() {
                            if let Some(v) = object.get(key) {
                                self.check(sub, v, &format!("{path}.{key}"), errors);
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(object) = value.as_object() {
                        let known = schema.get("properties").and_then(Value::as_object);
                        for (key, v) in object {
                            if known.is_some_and(|k| k.contains_key(key)) {
                                continue;
                            }
                            match arg {
                                Value::Bool(false) => {
                                    errors.push(format!("{path}: unexpected field {key:?}"))
                                }
                                Value::Bool(true) => {}
                                sub => self.check(sub, v, &format!("{path}.{key}"), errors),
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(items) = value.as_array() {
                        for (i, v) in items.iter().enumerate() {
                            self.check(arg, v, &format!("{path}[{i}]"), errors);
                        }
                    }
                }
                "allOf" => {
                    for sub in arg.as_array().unwrap() {
                        self.check(sub, value, path, errors);
                    }
                }
                "oneOf" => {
                    let matching = arg
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|sub| self.valid(sub, value))
                        .count();
                    if matching != 1 {
                        errors.push(format!(
                            "{path}: {value} matches {matching} of the oneOf alternatives, not 1"
                        ));
                    }
                }
                "if" => {
                    let branch = if self.valid(arg, value) {
                        schema.get("then")
                    } else {
                        schema.get("else")
                    };
                    if let Some(branch) = branch {
                        self.check(branch, value, path, errors);
                    }
                }
                other => {
                    panic!("schema keyword {other:?} at {path} is not supported by this checker")
                }
            }
        }
    }
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => panic!("unknown type {t}"),
    }
}

/// `2026-12-01T10:00:00.123Z`: digits where digits go, the separators in place.
fn is_millisecond_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn the_checker_rejects_what_it_should() {
    let schema = Schema::new(serde_json::json!({
        "type": "object",
        "required": ["a"],
        "additionalProperties": false,
        "properties": {
            "a": { "oneOf": [{ "type": "integer", "minimum": 1 }, { "type": "null" }] },
            "t": { "type": "string", "pattern": TIME_PATTERN }
        }
    }));
    assert!(schema.errors(&serde_json::json!({ "a": 1 })).is_empty());
    assert!(schema
        .errors(&serde_json::json!({ "a": null, "t": "2026-12-01T10:00:00.123Z" }))
        .is_empty());
    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "a": 0 }),
        serde_json::json!({ "a": "1" }),
        serde_json::json!({ "a": 1, "b": 2 }),
        serde_json::json!({ "a": 1, "t": "2026-12-01T10:00:00Z" }),
    ] {
        assert!(!schema.errors(&bad).is_empty(), "{bad} passed");
    }
}
