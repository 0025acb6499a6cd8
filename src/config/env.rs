//! `${NAME}` and `${NAME:-default}` in configuration values, so that secrets live in the
//! environment (a Kubernetes Secret) rather than in the file. Errors name the variable,
//! never its value.

pub fn interpolate(s: &str) -> Result<String, String> {
    interpolate_with(s, |k| std::env::var(k).ok())
}

pub fn interpolate_with(s: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated '${' (write '${NAME}')".to_string());
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("'${{{inner}}}' is not a variable name"));
        }
        match get(name).or_else(|| default.map(str::to_string)) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_defaults_and_reports_missing_names_only() {
        let get = |k: &str| (k == "KEY").then(|| "s3cret".to_string());
        assert_eq!(
            interpolate_with("a=${KEY};b=${NOPE:-x}", get).unwrap(),
            "a=s3cret;b=x"
        );
        let e = interpolate_with("${MISSING}", get).unwrap_err();
        assert!(e.contains("MISSING") && !e.contains("s3cret"));
        assert!(interpolate_with("${bad name}", get).is_err());
        assert!(interpolate_with("${OPEN", get).is_err());
        assert_eq!(interpolate_with("no vars", get).unwrap(), "no vars");
    }
}
