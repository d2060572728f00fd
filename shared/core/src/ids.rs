//! Opaque, time-ordered identifiers: a short type prefix and a monotonic ULID, so that
//! listing by id lists in creation order.

use std::sync::Mutex;
use ulid::Generator;

static GENERATOR: Mutex<Option<Generator>> = Mutex::new(None);

/// A new id such as `prj_01JD8X...`, strictly greater than any id this process made before.
pub fn new_id(prefix: &str) -> String {
    let mut guard = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let generator = guard.get_or_insert_with(Generator::new);
    // Overflow needs 2^80 ids within one millisecond; fall back to a fresh random ULID.
    let ulid = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_increase() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("env")).collect();
        assert!(ids
            .iter()
            .all(|id| id.starts_with("env_") && id.len() == 30));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
