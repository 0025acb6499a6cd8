//! `${NAME}` and `${NAME:-default}` in configuration values, so that secrets live in the
//! environment (a Kubernetes Secret) rather than in the file.
//!
//! Errors name the variable, the field and where it is written (`file:line:column` of the
//! `${`), never a value. A value that cannot be expanded is reported once, here, and the
//! caller gets `None`: it treats the field as given but unknown, so that no second error
//! follows from the same mistake (an empty connection string that "has no EntityPath").

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::kql::diag::line_col;

/// `s` with every `${NAME}` replaced by `get(NAME)` (or the default of `${NAME:-default}`).
/// On error: the byte offset of the offending `${` in `s`, and what is wrong with it.
pub fn interpolate_with(
    s: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let at = s.len() - rest.len() + start;
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err((at, "unterminated '${' (write '${NAME}')".to_string()));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((at, format!("'${{{inner}}}' is not a variable name")));
        }
        match get(name).or_else(|| default.map(str::to_string)) {
            Some(v) => out.push_str(&v),
            None => return Err((at, format!("environment variable {name} is not set"))),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// `${…}` expansion for one configuration file. It knows where every value of the file is,
/// and keeps the errors (shared, so that the closures of every section can report through
/// one `&Env`; `load` puts them first, in file order).
pub(super) struct Env {
    file: String,
    text: String,
    places: HashMap<Vec<String>, Range<usize>>,
    get: Lookup,
    errors: RefCell<Vec<(usize, String)>>,
}

/// A table of the file, as errors name it: its key path (`["sources", "0"]`, for the places)
/// and its label (`sources[0] 'eh': `, `checkpoint.`, or empty at the top level).
pub(super) struct Scope<'e> {
    env: &'e Env,
    path: Vec<String>,
    label: String,
}

impl Env {
    /// Expansion from the process environment.
    pub fn new(file: &str, text: &str) -> Env {
        Env::with_lookup(file, text, Box::new(|k| std::env::var(k).ok()))
    }

    pub fn with_lookup(file: &str, text: &str, get: Lookup) -> Env {
        Env {
            file: file.to_string(),
            text: text.to_string(),
            places: places(text),
            get,
            errors: RefCell::new(Vec::new()),
        }
    }

    pub fn scope(&self, path: &[&str], label: impl Into<String>) -> Scope<'_> {
        Scope {
            env: self,
            path: path.iter().map(|s| s.to_string()).collect(),
            label: label.into(),
        }
    }

    /// The errors reported so far, in the order of their places in the file.
    pub fn take_errors(&self) -> Vec<String> {
        let mut errors = std::mem::take(&mut *self.errors.borrow_mut());
        errors.sort_by_key(|(at, _)| *at);
        errors.into_iter().map(|(_, e)| e).collect()
    }

    fn expand(&self, path: &[String], label: &str, value: &str) -> Option<String> {
        let (at, message) = match interpolate_with(value, &self.get) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let offset = self.offset_of(path, value, at);
        let place = match offset {
            Some(o) => {
                let (line, col) = line_col(&self.text, o);
                format!("{}:{line}:{col}", self.file)
            }
            None => self.file.clone(),
        };
        self.errors.borrow_mut().push((
            offset.unwrap_or(usize::MAX),
            format!("{place}: {label}: {message}"),
        ));
        None
    }

    /// Where in the file the `${` at byte `at` of `value` is written: the same occurrence
    /// of `${` inside the value's span (found in the raw text, so escapes before it do
    /// not shift it), else the start of the value.
    fn offset_of(&self, path: &[String], value: &str, at: usize) -> Option<usize> {
        let span = self.places.get(path)?.clone();
        let nth = value[..at].matches("${").count();
        let raw = self.text.get(span.clone())?;
        let found = raw.match_indices("${").nth(nth).map(|(i, _)| i);
        Some(span.start + found.unwrap_or(0))
    }
}

impl Scope<'_> {
    /// The value of `key` (below this table) with `${…}` expanded; `None` once reported.
    pub fn text(&self, key: &[&str], value: &str) -> Option<String> {
        let mut path = self.path.clone();
        path.extend(key.iter().map(|k| k.to_string()));
        let label = format!("{}{}", self.label, KeyLabel(key));
        self.env.expand(&path, &label, value)
    }

    /// [`Scope::text`] of an optional value.
    pub fn opt(&self, key: &str, value: &Option<String>) -> Option<String> {
        self.text(&[key], value.as_ref()?)
    }
}

/// `tls.ca_file`, `paths[1]`, `properties.sasl.password`: a key as the messages write it.
struct KeyLabel<'a>(&'a [&'a str]);

impl fmt::Display for KeyLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.0.iter().enumerate() {
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) {
                write!(f, "[{k}]")?;
            } else if i == 0 {
                write!(f, "{k}")?;
            } else {
                write!(f, ".{k}")?;
            }
        }
        Ok(())
    }
}

/// The byte range of every value in a TOML document, by key path (array elements by their
/// index). Empty when the text does not parse (serde reports that, with its place).
///
/// Two passes: `toml::Value` gives the shape, then the text is read again with that shape
/// as the seed, asking for a `toml::Spanned` at each leaf. (A table cannot be asked for its
/// span: one made implicitly by `[a.b]` has none, and asking fails the whole parse.)
fn places(text: &str) -> HashMap<Vec<String>, Range<usize>> {
    let mut out = HashMap::new();
    let Ok(shape) = toml::from_str::<toml::Value>(text) else {
        return out;
    };
    let seed = Shape {
        value: &shape,
        path: &mut Vec::new(),
        out: &mut out,
    };
    if seed.deserialize(toml::Deserializer::new(text)).is_err() {
        out.clear();
    }
    out
}

/// Reads one value whose shape is known, recording the span of every leaf below it.
struct Shape<'a> {
    value: &'a toml::Value,
    path: &'a mut Vec<String>,
    out: &'a mut HashMap<Vec<String>, Range<usize>>,
}

impl<'de> DeserializeSeed<'de> for Shape<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.value {
            toml::Value::Table(_) => d.deserialize_map(self),
            toml::Value::Array(_) => d.deserialize_seq(self),
            _ => {
                let leaf = toml::Spanned::<IgnoredAny>::deserialize(d)?;
                self.out.insert(self.path.clone(), leaf.span());
                Ok(())
            }
        }
    }
}

impl<'de> Visitor<'de> for Shape<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML table or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<String>()? {
            match self.value.get(&k) {
                Some(value) => {
                    self.path.push(k);
                    map.next_value_seed(Shape {
                        value,
                        path: &mut *self.path,
                        out: &mut *self.out,
                    })?;
                    self.path.pop();
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let items = self.value.as_array().map(Vec::as_slice).unwrap_or_default();
        for (i, value) in items.iter().enumerate() {
            self.path.push(i.to_string());
            let more = seq.next_element_seed(Shape {
                value,
                path: &mut *self.path,
                out: &mut *self.out,
            })?;
            self.path.pop();
            if more.is_none() {
                break;
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup() -> Lookup {
        Box::new(|k: &str| (k == "KEY").then(|| "s3cret".to_string()))
    }

    #[test]
    fn substitutes_defaults_and_reports_missing_names_only() {
        let get = |k: &str| (k == "KEY").then(|| "s3cret".to_string());
        assert_eq!(
            interpolate_with("a=${KEY};b=${NOPE:-x}", get).unwrap(),
            "a=s3cret;b=x"
        );
        let (at, e) = interpolate_with("x${KEY}${MISSING}", get).unwrap_err();
        assert_eq!(at, 7);
        assert!(e.contains("MISSING") && !e.contains("s3cret"));
        assert!(interpolate_with("${bad name}", get).is_err());
        assert!(interpolate_with("${OPEN", get).is_err());
        assert_eq!(interpolate_with("no vars", get).unwrap(), "no vars");
    }

    #[test]
    fn a_missing_variable_says_file_line_column_and_key() {
        let text = "[[sources]]\nname = \"a\"\n\n[[sources]]\nname = \"b\"\nconnection_string = \"Endpoint=${KEY};${MISSING}\"\nproperties = { \"sasl.password\" = '${GONE}' }\n";
        let env = Env::with_lookup("c.toml", text, lookup());
        let s = env.scope(&["sources", "1"], "sources[1] 'b': ");
        let cs = "Endpoint=${KEY};${MISSING}".to_string();
        assert_eq!(s.opt("connection_string", &Some(cs)), None);
        assert_eq!(s.text(&["properties", "sasl.password"], "${GONE}"), None);
        assert_eq!(
            s.text(&["name"], "${KEY}").as_deref(),
            Some("s3cret"),
            "a set variable expands"
        );
        let errors = env.take_errors();
        assert_eq!(
            errors,
            [
                "c.toml:6:38: sources[1] 'b': connection_string: environment variable MISSING is not set",
                "c.toml:7:35: sources[1] 'b': properties.sasl.password: environment variable GONE is not set",
            ]
        );
        assert!(errors.iter().all(|e| !e.contains("s3cret")));
    }

    #[test]
    fn places_cover_tables_arrays_and_multiline_strings() {
        let text = "listen = \"${A}\"\n[checkpoint.blob]\nconnection_string = \"\"\"\n${B}\"\"\"\n[[x]]\npaths = [\"a\", \"${C}\"]\n";
        let env = Env::with_lookup("f", text, Box::new(|_| None));
        env.scope(&[], "").text(&["listen"], "${A}");
        env.scope(&["checkpoint"], "checkpoint.")
            .text(&["blob", "connection_string"], "${B}");
        env.scope(&[], "").text(&["x", "0", "paths", "1"], "${C}");
        let errors = env.take_errors();
        assert_eq!(
            errors[0],
            "f:1:11: listen: environment variable A is not set"
        );
        assert_eq!(
            errors[1],
            "f:4:1: checkpoint.blob.connection_string: environment variable B is not set"
        );
        assert_eq!(
            errors[2],
            "f:6:16: x[0].paths[1]: environment variable C is not set"
        );
    }

    #[test]
    fn an_unknown_place_still_names_the_file_and_key() {
        let env = Env::with_lookup("f", "not = [toml", Box::new(|_| None));
        env.scope(&[], "").text(&["k"], "${A}");
        assert_eq!(
            env.take_errors(),
            ["f: k: environment variable A is not set"]
        );
    }
}
