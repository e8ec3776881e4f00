//! Names and paths: `tenant/env/namespace` and `tenant/env/` prefixes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest name: one leading character plus 62 more (`[a-z0-9][a-z0-9._-]{0,62}`).
pub const MAX_NAME_LEN: usize = 63;

/// Checks a tenant, environment or namespace name against
/// `[a-z0-9][a-z0-9._-]{0,62}`. `kind` names what is checked in the error.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(bad("must not be empty".into()));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "is {} characters long, at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        )));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(bad(format!(
            "must start with a lowercase letter or a digit, not {first:?}"
        )));
    }
    for (i, c) in name.char_indices().skip(1) {
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
            return Err(bad(format!(
                "character {c:?} at position {} is not allowed (use a-z, 0-9, '.', '_', '-')",
                i + 1
            )));
        }
    }
    Ok(())
}

/// A namespace address: `tenant/env/namespace`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NsPath {
    /// Tenant name.
    pub tenant: String,
    /// Environment name.
    pub env: String,
    /// Namespace name.
    pub namespace: String,
}

impl NsPath {
    /// Builds a path from its three names, validating each.
    pub fn new(tenant: &str, env: &str, namespace: &str) -> Result<Self> {
        validate_name("tenant", tenant)?;
        validate_name("environment", env)?;
        validate_name("namespace", namespace)?;
        Ok(NsPath {
            tenant: tenant.to_string(),
            env: env.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// The environment this namespace belongs to.
    pub fn env_path(&self) -> EnvPath {
        EnvPath {
            tenant: self.tenant.clone(),
            env: self.env.clone(),
        }
    }
}

impl fmt::Display for NsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.env, self.namespace)
    }
}

impl FromStr for NsPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match Target::from_str(s)? {
            Target::Namespace(p) => Ok(p),
            Target::Prefix(_) => Err(Error::InvalidPath {
                path: s.to_string(),
                reason: "expected tenant/env/namespace, got a prefix (it ends in '/')".into(),
            }),
        }
    }
}

impl TryFrom<String> for NsPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<NsPath> for String {
    fn from(p: NsPath) -> String {
        p.to_string()
    }
}

/// An environment address: `tenant/env`, written as the prefix `tenant/env/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvPath {
    /// Tenant name.
    pub tenant: String,
    /// Environment name.
    pub env: String,
}

impl EnvPath {
    /// Builds an environment address, validating both names.
    pub fn new(tenant: &str, env: &str) -> Result<Self> {
        validate_name("tenant", tenant)?;
        validate_name("environment", env)?;
        Ok(EnvPath {
            tenant: tenant.to_string(),
            env: env.to_string(),
        })
    }

    /// Parses `tenant/env` or `tenant/env/`.
    pub fn parse(s: &str) -> Result<Self> {
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        match Target::from_str(&format!("{trimmed}/"))? {
            Target::Prefix(e) => Ok(e),
            Target::Namespace(_) => Err(Error::InvalidPath {
                path: s.to_string(),
                reason: "expected tenant/env".into(),
            }),
        }
    }

    /// Whether `path` lies in this environment.
    pub fn contains(&self, path: &NsPath) -> bool {
        self.tenant == path.tenant && self.env == path.env
    }
}

impl fmt::Display for EnvPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/", self.tenant, self.env)
    }
}

/// What a watch or list addresses: one namespace, or every namespace of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `tenant/env/namespace`
    Namespace(NsPath),
    /// `tenant/env/`
    Prefix(EnvPath),
}

impl Target {
    /// Whether `path` is addressed by this target.
    pub fn matches(&self, path: &NsPath) -> bool {
        match self {
            Target::Namespace(p) => p == path,
            Target::Prefix(e) => e.contains(path),
        }
    }

    /// [`Target::matches`] for a path in its canonical text form
    /// (`tenant/env/namespace`), without parsing it: the watch fan-out checks
    /// every change against every subscriber's targets. Text that is not a
    /// path of three segments matches nothing; the names themselves are not
    /// validated (an applied change's path always is valid), so under a prefix
    /// target `pay/prod/BAD` would match where parsing would refuse it.
    pub fn matches_str(&self, path: &str) -> bool {
        let mut parts = path.splitn(3, '/');
        let (Some(tenant), Some(env), Some(namespace)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if namespace.is_empty() || namespace.contains('/') {
            return false;
        }
        match self {
            Target::Namespace(p) => p.tenant == tenant && p.env == env && p.namespace == namespace,
            Target::Prefix(e) => e.tenant == tenant && e.env == env,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Namespace(p) => p.fmt(f),
            Target::Prefix(e) => e.fmt(f),
        }
    }
}

impl FromStr for Target {
    type Err = Error;
    /// Parses `tenant/env/namespace` or `tenant/env/`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidPath {
            path: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [t, e, ""] => Ok(Target::Prefix(EnvPath::new(t, e)?)),
            [t, e, n] => Ok(Target::Namespace(NsPath::new(t, e, n)?)),
            _ => Err(bad(
                "expected tenant/env/namespace or the prefix tenant/env/ (three parts separated by '/')",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_text_agrees_with_matching_parsed_paths() {
        let targets: Vec<Target> = ["pay/prod/", "pay/prod/api", "pay/dev/", "ops/prod/api"]
            .iter()
            .map(|t| t.parse().expect("valid target"))
            .collect();
        let paths = [
            "pay/prod/api",
            "pay/prod/web",
            "pay/dev/api",
            "ops/prod/api",
            "pay/prodx/api",
            "pay/pro/api",
            "pay/prod/",
            "pay/prod",
            "pay/prod/api/x",
            "",
        ];
        for target in &targets {
            for path in paths {
                let parsed = path.parse::<NsPath>().is_ok_and(|p| target.matches(&p));
                assert_eq!(
                    target.matches_str(path),
                    parsed,
                    "{target} against {path:?}"
                );
            }
        }
    }

    #[test]
    fn names_follow_the_rule() {
        assert!(validate_name("tenant", "payments").is_ok());
        assert!(validate_name("tenant", "a").is_ok());
        assert!(validate_name("tenant", "0a._-z").is_ok());
        assert!(validate_name("tenant", &"a".repeat(63)).is_ok());
        assert!(validate_name("tenant", &"a".repeat(64)).is_err());
        assert!(validate_name("tenant", "").is_err());
        assert!(validate_name("tenant", "-a").is_err());
        assert!(validate_name("tenant", "Pay").is_err());
        assert!(validate_name("tenant", "a/b").is_err());
        assert!(validate_name("tenant", "é").is_err());
    }

    #[test]
    fn paths_and_prefixes_parse() {
        let p: NsPath = "pay/prod/checkout".parse().expect("valid path");
        assert_eq!(p.to_string(), "pay/prod/checkout");
        assert!(matches!(
            "pay/prod/".parse::<Target>(),
            Ok(Target::Prefix(_))
        ));
        assert!("pay/prod/".parse::<NsPath>().is_err());
        assert!("pay/prod".parse::<Target>().is_err());
        assert!("pay/prod/a/b".parse::<Target>().is_err());
        let err = "pay/Prod/x".parse::<NsPath>().unwrap_err().to_string();
        assert!(err.contains("environment"), "{err}");
        assert_eq!(
            EnvPath::parse("pay/prod").expect("valid").to_string(),
            "pay/prod/"
        );
    }
}
