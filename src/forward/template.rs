//! Names made per row — an Elasticsearch index, a Kafka topic, a Splunk sourcetype:
//! `{table}`, `{route}`, `{source}` and the row's `TimeGenerated` date as `%Y`, `%m`, `%d`
//! (UTC). `hubwatch-{table}-%Y.%m.%d` gives `hubwatch-amlcomputejobevent-2024.05.20` with
//! `lowercase`, as Elasticsearch index names must be.

use super::Routed;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Table,
    Route,
    Source,
    Year,
    Month,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    lowercase: bool,
}

impl Template {
    /// Parses `text`; an unknown `{name}` or `%x` is an error that names it.
    pub fn parse(text: &str, lowercase: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let (part, len) = match c {
                '{' => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("'{text}': a '{{' without its '}}'"))?;
                    let part = match &rest[1..end] {
                        "table" => Part::Table,
                        "route" => Part::Route,
                        "source" => Part::Source,
                        other => {
                            return Err(format!(
                                "'{text}': unknown field {{{other}}} (use {{table}}, {{route}} or {{source}})"
                            ))
                        }
                    };
                    (Some(part), end + 1)
                }
                '%' => {
                    let part = match rest[1..].chars().next() {
                        Some('Y') => Part::Year,
                        Some('m') => Part::Month,
                        Some('d') => Part::Day,
                        Some('%') => Part::Text("%".into()),
                        _ => {
                            return Err(format!(
                                "'{text}': unknown date field after '%' (use %Y, %m, %d or %%)"
                            ))
                        }
                    };
                    (Some(part), 2)
                }
                c => {
                    lit.push(c);
                    (None, c.len_utf8())
                }
            };
            if let Some(p) = part {
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(p);
            }
            rest = &rest[len..];
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template { parts, lowercase })
    }

    /// Whether the name is the same for every row.
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text of a fixed template ([`Template::is_fixed`]).
    pub fn fixed_text(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            if let Part::Text(t) = p {
                out.push_str(t);
            }
        }
        if self.lowercase {
            out = out.to_lowercase();
        }
        out
    }

    pub fn render(&self, row: &Routed<'_>, out: &mut String) {
        let start = out.len();
        // `YYYY-MM-DD`, formatted once a row, and only when a date field asks.
        let mut date: Option<String> = None;
        let mut date_part = |out: &mut String, range: std::ops::Range<usize>| {
            let d = date.get_or_insert_with(|| crate::time::format_datetime(row.time));
            out.push_str(d.get(range).unwrap_or("00"));
        };
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Table => out.push_str(row.table),
                Part::Route => out.push_str(row.route),
                Part::Source => out.push_str(row.origin.name()),
                Part::Year => date_part(out, 0..4),
                Part::Month => date_part(out, 5..7),
                Part::Day => date_part(out, 8..10),
            }
        }
        if self.lowercase {
            let rendered = &mut out[start..];
            if rendered.is_ascii() {
                rendered.make_ascii_lowercase();
            } else {
                let lower = rendered.to_lowercase();
                out.truncate(start);
                out.push_str(&lower);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_dates_fill_in_and_unknown_ones_are_refused() {
        let t = crate::time::parse_datetime("2024-05-20T10:00:03Z")
            .unwrap()
            .0;
        let position = crate::source::Position {
            partition: "0".into(),
            offset: 0,
            sequence_number: 0,
            enqueued_time: None,
        };
        let row = Routed {
            json: b"{}",
            route: "jobs",
            origin: crate::forward::Origin::Record {
                source: "eh",
                position: &position,
            },
            time: t,
            values: &[],
            columns: &[],
            known: &Default::default(),
            meta: &Default::default(),
            table: "AmlComputeJobEvent",
            ordinal: 0,
            original: false,
        };
        let mut out = String::new();
        Template::parse("hubwatch-{table}-%Y.%m.%d", true)
            .unwrap()
            .render(&row, &mut out);
        assert_eq!(out, "hubwatch-amlcomputejobevent-2024.05.20");
        out.clear();
        Template::parse("{route}@{source} 100%%", false)
            .unwrap()
            .render(&row, &mut out);
        assert_eq!(out, "jobs@eh 100%");
        assert!(Template::parse("x-{tabel}", true)
            .unwrap_err()
            .contains("unknown field {tabel}"));
        assert!(Template::parse("x-%H", true).unwrap_err().contains("%Y"));
        assert!(Template::parse("logs", true).unwrap().is_fixed());
    }
}
