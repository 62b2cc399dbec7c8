//! Normalisation of third-party identifiers, so that every client's hash of an address finds
//! it: e-mail addresses trimmed and lower-cased (matrix-js-sdk lower-cases before hashing,
//! Synapse does not); phone numbers as E.164 digits without `+`.

/// The normalised form of `address` for `medium`, or `None` when it cannot be one.
#[must_use]
pub fn normalize(medium: &str, address: &str) -> Option<String> {
    match medium {
        "email" => {
            let address = address.trim().to_lowercase();
            let (local, domain) = address.split_once('@')?;
            (!local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace)).then_some(address)
        }
        "msisdn" => {
            let digits: String = address.chars().filter(char::is_ascii_digit).collect();
            let only_digits =
                address.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'));
            (only_digits && (5..=15).contains(&digits.len())).then_some(digits)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(normalize("email", " Alice@Example.COM ").as_deref(), Some("alice@example.com"));
        assert_eq!(normalize("email", "no-at-sign"), None);
        assert_eq!(normalize("msisdn", "+33 6 12 34 56 78").as_deref(), Some("33612345678"));
        assert_eq!(normalize("msisdn", "call me"), None);
        assert_eq!(normalize("fax", "123"), None);
    }
}
