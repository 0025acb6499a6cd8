//! Configuration text through the loader `hubwatch check` and `run` use: TOML, `${VAR}`s,
//! every table's checks, the queries it holds. Any text must load or give errors (never a
//! panic), each error naming the file, and no error may quote a secret it was given.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use hubwatch::config::load_text;
use hubwatch::schema::Schemas;
use libfuzzer_sys::fuzz_target;

/// Set in the environment for `${FUZZ_SECRET}`: it must never come back in an error.
const SECRET: &str = "Zm9vYmFyc2VjcmV0a2V5";

fn schemas() -> Arc<Schemas> {
    static SCHEMAS: OnceLock<Arc<Schemas>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            std::env::set_var("FUZZ_SECRET", SECRET);
            Schemas::embedded()
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schemas = schemas();
    // A folder that does not exist: relative query files are not found, never read from
    // wherever the fuzzer runs.
    let path = Path::new("/nonexistent/hubwatch-fuzz/hubwatch.toml");
    if let Err(errors) = load_text(path, text, &schemas) {
        for e in &errors.0 {
            assert!(!e.contains(SECRET), "an error quotes the secret: {e}");
        }
    }
});
