//! Prefixed, time-sortable, unguessable ids: `cus_01jd8x...`. The part after the prefix is a
//! ULID (48 bits of milliseconds, 80 random bits) in lowercase Crockford base32.

/// A new id with the given prefix.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Whether `id` has the shape of an id with `prefix`, so that a path parameter that cannot
/// name anything is answered 404 without a query.
pub fn has_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|ulid| ulid.len() == 26 && ulid::Ulid::from_string(ulid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_have_their_shape_and_sort_by_time() {
        let first = new_id("cus");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id("cus");
        assert!(has_shape(&first, "cus"));
        assert!(!has_shape(&first, "stf"));
        assert!(first < second);
        assert!(!has_shape("cus_nope", "cus"));
    }
}
