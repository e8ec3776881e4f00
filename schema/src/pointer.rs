//! JSON pointers (RFC 6901): the one implementation of escaping, splitting and
//! joining that violations, diffs, edits and document errors all share.
//!
//! A pointer is `""` (the whole document) or a sequence of `/`-prefixed
//! reference tokens, in which `~` is written `~0` and `/` is written `~1`:
//! the key `a/b` of the key `c~d` is `/c~0d/a~1b`.

use std::borrow::Cow;

use crate::{Error, Result};

/// Escapes one reference token: `~` becomes `~0`, `/` becomes `~1`.
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Appends `/` and the escaped `token` to `pointer`.
pub fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    pointer.push_str(&escape_token(token));
}

/// Joins unescaped reference tokens into a pointer; no tokens give `""`.
pub fn join_pointer<I, S>(tokens: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut pointer = String::new();
    for token in tokens {
        push_token(&mut pointer, token.as_ref());
    }
    pointer
}

/// Unescapes one reference token (`~1` → `/`, `~0` → `~`). A `~` followed by
/// anything but `0` or `1` is an error, as RFC 6901 requires; `pointer` is
/// the whole pointer, for the message.
pub fn unescape_token<'a>(token: &'a str, pointer: &str) -> Result<Cow<'a, str>> {
    if !token.contains('~') {
        return Ok(Cow::Borrowed(token));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            other => {
                let found = other.map_or("the end of the token".to_string(), |c| format!("{c:?}"));
                return Err(Error::InvalidPointer {
                    pointer: pointer.to_string(),
                    reason: format!(
                        "'~' must be followed by '0' (for '~') or '1' (for '/'), not {found}"
                    ),
                });
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Splits a pointer into its unescaped reference tokens: `""` gives none,
/// `"/"` gives one empty token (the key `""`), `/a~1b/0` gives `a/b` and `0`.
/// A non-empty pointer must start with `/`.
pub fn split_pointer(pointer: &str) -> Result<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(Error::InvalidPointer {
            pointer: pointer.to_string(),
            reason: "a JSON pointer is empty (the whole document) or starts with '/'".into(),
        });
    };
    rest.split('/')
        .map(|token| unescape_token(token, pointer).map(Cow::into_owned))
        .collect()
}

/// How a pointer reads in a message: the pointer itself, or "the document
/// root" for `""`.
pub fn describe_pointer(pointer: &str) -> Cow<'_, str> {
    if pointer.is_empty() {
        Cow::Borrowed("the document root")
    } else {
        Cow::Borrowed(pointer)
    }
}

/// Parses an array index token: decimal digits without a leading zero
/// (RFC 6901). `None` for anything else, including `-`.
pub(crate) fn parse_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_escape_and_unescape() {
        assert_eq!(escape_token("plain"), "plain");
        assert!(matches!(escape_token("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_token("a/b~c"), "a~1b~0c");
        // `~1` must not be read back as `/` after `~0` was decoded: `~01` is `~1`.
        assert_eq!(escape_token("~1"), "~01");
        assert_eq!(unescape_token("~01", "/~01").expect("valid"), "~1");
        assert_eq!(unescape_token("a~1b~0c", "").expect("valid"), "a/b~c");
    }

    #[test]
    fn bad_escapes_are_refused_naming_the_pointer() {
        for bad in ["/a~2", "/a~", "/~x/b"] {
            match split_pointer(bad) {
                Err(Error::InvalidPointer { pointer, reason }) => {
                    assert_eq!(pointer, bad);
                    assert!(reason.contains("'~' must be followed"), "{reason}");
                }
                other => panic!("expected InvalidPointer for {bad}, got {other:?}"),
            }
        }
        let err = split_pointer("a/b").expect_err("no leading slash");
        assert!(err.to_string().contains("starts with '/'"), "{err}");
    }

    #[test]
    fn pointers_split_and_join() {
        assert!(split_pointer("").expect("root").is_empty());
        assert_eq!(split_pointer("/").expect("empty key"), vec![""]);
        assert_eq!(
            split_pointer("/a~1b//0").expect("valid"),
            vec!["a/b", "", "0"]
        );
        let tokens = ["c~d", "a/b", "", "x y"];
        let pointer = join_pointer(tokens);
        assert_eq!(pointer, "/c~0d/a~1b//x y");
        assert_eq!(split_pointer(&pointer).expect("round trip"), tokens);
        assert_eq!(join_pointer(Vec::<String>::new()), "");
    }

    #[test]
    fn indexes_follow_rfc_6901() {
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("12"), Some(12));
        assert_eq!(parse_index("01"), None);
        assert_eq!(parse_index("-"), None);
        assert_eq!(parse_index("+1"), None);
        assert_eq!(parse_index(""), None);
        assert_eq!(parse_index("99999999999999999999999"), None);
    }
}
