//! Checks a JSON Schema before it is compiled, so that a bad or
//! unsupported schema is refused with the path of the fault (for the
//! error's `param`) and no schema can make the compiler work for long:
//! nesting deeper than [`MAX_DEPTH`], more than [`MAX_PROPERTIES`]
//! properties or [`MAX_ENUM`] enum values are refused here; the grammar's
//! size is capped when it is compiled.
//!
//! The subset is the one OpenAI documents for structured outputs: `type`
//! (one or a list, `null` for nullable), `properties`, `required`,
//! `additionalProperties`, `enum`, `const`, `anyOf` (`oneOf`, `allOf` too),
//! `$ref` into `$defs`/`definitions` (recursive too), arrays with `items`,
//! `prefixItems`, `minItems`, `maxItems`, strings with `pattern`, `format`,
//! `minLength`, `maxLength`, numbers with their bounds. With `strict`,
//! every object must also say `additionalProperties: false` and list all
//! of its properties in `required`, as OpenAI asks.

use serde_json::{Map, Value};

/// Deepest nesting of schemas inside schemas.
pub const MAX_DEPTH: usize = 10;
/// Most properties over the whole schema.
pub const MAX_PROPERTIES: usize = 5000;
/// Most values in all `enum`s together.
pub const MAX_ENUM: usize = 1000;

/// A fault in a schema: where (a dotted path inside the schema, empty for
/// the root) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFault {
    pub path: String,
    pub message: String,
}

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Keywords that only annotate; accepted anywhere.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "x-guidance",
];

/// Keywords the matcher cannot enforce: refused rather than ignored.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "$dynamicRef",
    "$recursiveRef",
];

/// Checks `schema`; `strict` adds OpenAI's strict-mode rules.
pub fn check(schema: &Value, strict: bool) -> Result<(), SchemaFault> {
    let mut walker = Walker {
        root: schema,
        strict,
        properties: 0,
        enums: 0,
    };
    walker.schema(schema, "", 0)
}

struct Walker<'a> {
    root: &'a Value,
    strict: bool,
    properties: usize,
    enums: usize,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn fault(path: &str, message: impl Into<String>) -> SchemaFault {
    SchemaFault {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl Walker<'_> {
    fn schema(&mut self, schema: &Value, path: &str, depth: usize) -> Result<(), SchemaFault> {
        if depth > MAX_DEPTH {
            return Err(fault(
                path,
                format!("The schema is nested more than {MAX_DEPTH} levels deep."),
            ));
        }
        let object = match schema {
            Value::Bool(_) => return Ok(()),
            Value::Object(object) => object,
            _ => return Err(fault(path, "A schema must be an object or a boolean.")),
        };
        for key in object.keys() {
            if UNSUPPORTED.contains(&key.as_str()) {
                return Err(fault(
                    &join(path, key),
                    format!("The keyword '{key}' is not supported in structured outputs."),
                ));
            }
        }
        if let Some(types) = object.get("type") {
            self.types(types, &join(path, "type"))?;
        }
        if let Some(target) = object.get("$ref") {
            self.reference(target, &join(path, "$ref"))?;
        }
        for key in ["$defs", "definitions"] {
            if let Some(defs) = object.get(key) {
                let at = join(path, key);
                let defs = defs
                    .as_object()
                    .ok_or_else(|| fault(&at, format!("'{key}' must be an object.")))?;
                for (name, def) in defs {
                    self.schema(def, &join(&at, name), depth + 1)?;
                }
            }
        }
        self.object_keywords(object, path, depth)?;
        self.array_keywords(object, path, depth)?;
        self.scalar_keywords(object, path)?;
        for combinator in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = object.get(combinator) {
                let at = join(path, combinator);
                let list = list
                    .as_array()
                    .filter(|list| !list.is_empty())
                    .ok_or_else(|| {
                        fault(&at, format!("'{combinator}' must be a non-empty array."))
                    })?;
                for (i, option) in list.iter().enumerate() {
                    self.schema(option, &format!("{at}[{i}]"), depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn types(&self, types: &Value, path: &str) -> Result<(), SchemaFault> {
        let known = |t: &Value| t.as_str().is_some_and(|t| TYPES.contains(&t));
        let ok = match types {
            Value::String(_) => known(types),
            Value::Array(list) => !list.is_empty() && list.iter().all(known),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(fault(
                path,
                format!(
                    "'type' must be one of {} or a non-empty array of them.",
                    TYPES.join(", ")
                ),
            ))
        }
    }

    fn reference(&self, target: &Value, path: &str) -> Result<(), SchemaFault> {
        let target = target
            .as_str()
            .ok_or_else(|| fault(path, "'$ref' must be a string."))?;
        if target == "#" {
            return Ok(());
        }
        let pointer = target.strip_prefix('#').ok_or_else(|| {
            fault(
                path,
                format!("Only local references (#/$defs/...) are supported, got '{target}'."),
            )
        })?;
        let pointer = pointer.replace("~1", "/").replace("~0", "~");
        if self.root.pointer(&pointer).is_none() {
            return Err(fault(
                path,
                format!("The reference '{target}' points at nothing in the schema."),
            ));
        }
        Ok(())
    }

    fn object_keywords(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<(), SchemaFault> {
        let properties = match object.get("properties") {
            None => None,
            Some(Value::Object(properties)) => Some(properties),
            Some(_) => {
                return Err(fault(
                    &join(path, "properties"),
                    "'properties' must be an object.",
                ))
            }
        };
        if let Some(properties) = properties {
            self.properties += properties.len();
            if self.properties > MAX_PROPERTIES {
                return Err(fault(
                    &join(path, "properties"),
                    format!("The schema has more than {MAX_PROPERTIES} properties."),
                ));
            }
            for (name, property) in properties {
                self.schema(property, &join(&join(path, "properties"), name), depth + 1)?;
            }
        }
        let required = match object.get("required") {
            None => Vec::new(),
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                list.iter().filter_map(Value::as_str).collect()
            }
            Some(_) => {
                return Err(fault(
                    &join(path, "required"),
                    "'required' must be an array of property names.",
                ))
            }
        };
        match object.get("additionalProperties") {
            None | Some(Value::Bool(_)) => {}
            Some(extra) => self.schema(extra, &join(path, "additionalProperties"), depth + 1)?,
        }
        let is_object = object.get("type").is_some_and(|t| {
            t == "object"
                || t.as_array()
                    .is_some_and(|l| l.iter().any(|t| t == "object"))
        });
        if self.strict && is_object {
            if object.get("additionalProperties") != Some(&Value::Bool(false)) {
                return Err(fault(
                    &join(path, "additionalProperties"),
                    "In strict mode every object must set 'additionalProperties' to false.",
                ));
            }
            if let Some(properties) = properties {
                if let Some(missing) = properties.keys().find(|k| !required.contains(&k.as_str())) {
                    return Err(fault(
                        &join(path, "required"),
                        format!("In strict mode 'required' must list every property; '{missing}' is missing."),
                    ));
                }
            }
        }
        Ok(())
    }

    fn array_keywords(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<(), SchemaFault> {
        match object.get("items") {
            None => {}
            Some(items @ (Value::Object(_) | Value::Bool(_))) => {
                self.schema(items, &join(path, "items"), depth + 1)?
            }
            Some(_) => return Err(fault(&join(path, "items"), "'items' must be a schema.")),
        }
        if let Some(prefix) = object.get("prefixItems") {
            let at = join(path, "prefixItems");
            let list = prefix
                .as_array()
                .ok_or_else(|| fault(&at, "'prefixItems' must be an array of schemas."))?;
            for (i, item) in list.iter().enumerate() {
                self.schema(item, &format!("{at}[{i}]"), depth + 1)?;
            }
        }
        let min = counted(object, "minItems", path)?;
        let max = counted(object, "maxItems", path)?;
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(fault(
                    &join(path, "minItems"),
                    "'minItems' is larger than 'maxItems'.",
                ));
            }
        }
        Ok(())
    }

    fn scalar_keywords(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
    ) -> Result<(), SchemaFault> {
        if let Some(values) = object.get("enum") {
            let at = join(path, "enum");
            let list = values
                .as_array()
                .filter(|list| !list.is_empty())
                .ok_or_else(|| fault(&at, "'enum' must be a non-empty array."))?;
            self.enums += list.len();
            if self.enums > MAX_ENUM {
                return Err(fault(
                    &at,
                    format!("The schema has more than {MAX_ENUM} enum values."),
                ));
            }
        }
        if let Some(pattern) = object.get("pattern") {
            if !pattern.is_string() {
                return Err(fault(&join(path, "pattern"), "'pattern' must be a string."));
            }
        }
        if let Some(format) = object.get("format") {
            if !format.is_string() {
                return Err(fault(&join(path, "format"), "'format' must be a string."));
            }
        }
        let min = counted(object, "minLength", path)?;
        let max = counted(object, "maxLength", path)?;
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(fault(
                    &join(path, "minLength"),
                    "'minLength' is larger than 'maxLength'.",
                ));
            }
        }
        for bound in [
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
        ] {
            if let Some(value) = object.get(bound) {
                if !value.is_number() {
                    return Err(fault(
                        &join(path, bound),
                        format!("'{bound}' must be a number."),
                    ));
                }
            }
        }
        for key in object.keys() {
            let known = ANNOTATIONS.contains(&key.as_str()) || KNOWN.contains(&key.as_str());
            if !known && self.strict {
                return Err(fault(
                    &join(path, key),
                    format!("The keyword '{key}' is not supported in strict structured outputs."),
                ));
            }
        }
        Ok(())
    }
}

/// Keywords the matcher enforces.
const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "nullable",
];

fn counted(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>, SchemaFault> {
    match object.get(key) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            fault(
                &join(path, key),
                format!("'{key}' must be a non-negative integer."),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path_of(schema: Value, strict: bool) -> String {
        check(&schema, strict).unwrap_err().path
    }

    #[test]
    fn faults_name_their_place() {
        assert_eq!(
            path_of(
                json!({"type": "object", "properties": {"x": {"type": "strnig"}}}),
                false
            ),
            "properties.x.type"
        );
        assert_eq!(
            path_of(json!({"properties": {"a": {"items": {"not": {}}}}}), false),
            "properties.a.items.not"
        );
        assert_eq!(path_of(json!({"$ref": "#/$defs/missing"}), false), "$ref");
        assert_eq!(
            path_of(json!({"type": "object", "properties": {"a": {}}}), true),
            "additionalProperties"
        );
        assert_eq!(
            path_of(
                json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false}),
                true
            ),
            "required"
        );
    }

    #[test]
    fn depth_is_limited() {
        let mut schema = json!({"type": "string"});
        for _ in 0..12 {
            schema = json!({"type": "array", "items": schema});
        }
        let f = check(&schema, false).unwrap_err();
        assert!(f.message.contains("nested"), "{f:?}");
    }

    #[test]
    fn the_documented_subset_passes() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 3},
                "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
                "kind": {"const": "x"},
                "age": {"type": ["integer", "null"]}
            },
            "required": ["name", "tags", "next", "kind", "age"],
            "additionalProperties": false,
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}},
                "required": ["next"], "additionalProperties": false}}
        });
        check(&schema, true).unwrap();
    }
}
