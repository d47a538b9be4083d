//! Email addresses, normalised so that one mailbox is one account.

use serde::Serialize;

use crate::platform::error::FieldRule;

/// A syntactically valid address, trimmed and lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, FieldRule> {
        let email = raw.trim().to_lowercase();
        let invalid = || FieldRule::new("invalid_format", "must be an email address such as ana@example.com");
        if email.is_empty() {
            return Err(FieldRule::new("required", "must not be empty"));
        }
        if email.len() > 254 {
            return Err(FieldRule::new("too_long", "must be at most 254 characters"));
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        if !local_ok || !labels_ok || !domain.contains('.') {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_checked() {
        assert_eq!(EmailAddress::parse("  Ana@Example.COM ").unwrap().as_str(), "ana@example.com");
        assert!(EmailAddress::parse("ana.b+shop@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "ana@exa mple.com",
            "ana..b@example.com",
            "ana@-x.com",
            "<script>@x.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(65))).unwrap_err().code, "invalid_format");
    }
}
