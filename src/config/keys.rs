//! `[[server.keys]]`, `[server] api_keys` and `[server] admin_keys`: who may call the API,
//! under which name, with what rights. Read into [`ApiKey`]s once, at start.

use std::collections::HashSet;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use super::ServerConfig;
use super::values::Secret;

/// One `[[server.keys]]` entry as the file writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Shown in records, metrics, usage and logs (never the key itself).
    pub name: String,
    /// The key, in the file; or `key_env`.
    #[serde(default, skip_serializing_if = "key_unset")]
    pub key: Secret,
    /// The environment variable that holds the key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_env: String,
    /// Sees and manages every job, not only its own.
    #[serde(default)]
    pub admin: bool,
    /// Jobs this key may queue per day (from 00:00 in `[server] timezone`); 0: no limit.
    #[serde(default)]
    pub jobs_per_day: u64,
    /// USD this key's jobs may spend per day; 0: no daily budget of its own.
    #[serde(default)]
    pub daily_budget_usd: f64,
    /// USD this key's jobs may spend per month; 0: no monthly budget of its own.
    #[serde(default)]
    pub monthly_budget_usd: f64,
}

fn key_unset(key: &Secret) -> bool {
    !key.is_set()
}

/// An API key as ingest knows it: named, checked, unique.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub name: String,
    pub secret: Secret,
    pub admin: bool,
    pub jobs_per_day: Option<NonZeroU64>,
}

/// What is wrong with the keys: the key's place (`server.keys[1].name`) and the problem.
#[derive(Debug, PartialEq)]
pub(super) struct KeyProblem {
    pub(super) key: String,
    pub(super) problem: String,
}

impl ServerConfig {
    /// Every key: `[[server.keys]]` entries, then `api_keys` (named `key-1`, `key-2`, ...:
    /// ordinary keys) and `admin_keys` (`admin-1`, ...). `key_env` must have been read.
    pub fn api_keys(&self) -> Vec<ApiKey> {
        let named = self.keys.iter().map(|entry| ApiKey {
            name: entry.name.clone(),
            secret: entry.key.clone(),
            admin: entry.admin,
            jobs_per_day: NonZeroU64::new(entry.jobs_per_day),
        });
        let short = |prefix: &'static str, admin: bool| {
            move |(index, secret): (usize, &Secret)| ApiKey {
                name: format!("{prefix}-{}", index + 1),
                secret: secret.clone(),
                admin,
                jobs_per_day: None,
            }
        };
        named
            .chain(self.api_keys.iter().enumerate().map(short("key", false)))
            .chain(self.admin_keys.iter().enumerate().map(short("admin", true)))
            .collect()
    }

    /// Whether any key is configured (else the API is open to whoever reaches it).
    pub fn has_keys(&self) -> bool {
        !(self.keys.is_empty() && self.api_keys.is_empty() && self.admin_keys.is_empty())
    }

    /// Reads each entry's `key_env` from `env` into its key.
    pub(super) fn read_key_envs(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), KeyProblem> {
        for (index, entry) in self.keys.iter_mut().enumerate() {
            if entry.key_env.is_empty() {
                continue;
            }
            let place = format!("server.keys[{index}].key_env");
            if entry.key.is_set() {
                return Err(KeyProblem { key: place, problem: "set key or key_env, not both".into() });
            }
            match env(&entry.key_env).map(|value| value.trim().to_string()).filter(|value| !value.is_empty()) {
                Some(value) => entry.key = Secret::new(value),
                None => {
                    return Err(KeyProblem {
                        key: place,
                        problem: format!("the environment variable {} is not set", entry.key_env),
                    });
                }
            }
        }
        Ok(())
    }

    /// Names are short and plain (they become metric labels and log fields); every key
    /// and every name is different.
    pub(super) fn check_keys(&self) -> Result<(), KeyProblem> {
        for (index, entry) in self.keys.iter().enumerate() {
            let place = |field: &str| format!("server.keys[{index}].{field}");
            if let Some(problem) = name_problem(&entry.name) {
                return Err(KeyProblem { key: place("name"), problem });
            }
            if !entry.key.is_set() {
                return Err(KeyProblem { key: place("key"), problem: "set key or key_env".into() });
            }
        }
        let keys = self.api_keys();
        let mut names = HashSet::new();
        let mut secrets = HashSet::new();
        for key in &keys {
            if !names.insert(key.name.as_str()) {
                return Err(KeyProblem {
                    key: "server.keys".into(),
                    problem: format!("the name {:?} is given to two keys", key.name),
                });
            }
            if !secrets.insert(key.secret.expose()) {
                // Never the key itself: the name of the second entry that holds it.
                return Err(KeyProblem {
                    key: "server.keys".into(),
                    problem: format!("the key named {:?} is also given to another name", key.name),
                });
            }
        }
        Ok(())
    }
}

/// Why `name` cannot name a key, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() {
        Some("every key needs a name".into())
    } else if name.len() > 64 || !name.chars().all(plain) {
        Some(format!("{name:?}: use up to 64 letters, digits, '-', '_' or '.'"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, key: &str) -> KeyConfig {
        KeyConfig { name: name.into(), key: Secret::new(key), ..KeyConfig::default() }
    }

    #[test]
    fn short_lists_become_named_keys_after_the_named_ones() {
        let server = ServerConfig {
            keys: vec![KeyConfig { admin: true, jobs_per_day: 5, ..entry("design", "k-design") }],
            api_keys: vec![Secret::new("k-1"), Secret::new("k-2")],
            admin_keys: vec![Secret::new("k-root")],
            ..ServerConfig::default()
        };
        let keys: Vec<(String, bool, Option<u64>)> =
            server.api_keys().into_iter().map(|k| (k.name, k.admin, k.jobs_per_day.map(|n| n.get()))).collect();
        assert_eq!(
            keys,
            [
                ("design".into(), true, Some(5)),
                ("key-1".into(), false, None),
                ("key-2".into(), false, None),
                ("admin-1".into(), true, None),
            ]
        );
        assert_eq!(server.check_keys(), Ok(()));
    }

    #[test]
    fn the_same_name_or_key_twice_is_refused_naming_the_name_not_the_key() {
        let twice = ServerConfig { keys: vec![entry("a", "k1"), entry("a", "k2")], ..ServerConfig::default() };
        assert!(twice.check_keys().unwrap_err().problem.contains("\"a\" is given to two keys"));
        let shared = ServerConfig {
            keys: vec![entry("a", "same-key")],
            api_keys: vec![Secret::new("same-key")],
            ..ServerConfig::default()
        };
        let problem = shared.check_keys().unwrap_err().problem;
        assert!(problem.contains("key-1") && !problem.contains("same-key"), "{problem}");
    }

    #[test]
    fn a_key_env_is_read_and_must_be_set() {
        let mut server = ServerConfig {
            keys: vec![KeyConfig { name: "ci".into(), key_env: "CI_KEY".into(), ..KeyConfig::default() }],
            ..ServerConfig::default()
        };
        let problem = server.clone().read_key_envs(|_| None).unwrap_err();
        assert_eq!(problem.key, "server.keys[0].key_env");
        server.read_key_envs(|name| (name == "CI_KEY").then(|| "from-env".to_string())).unwrap();
        assert_eq!(server.api_keys()[0].secret.expose(), "from-env");
    }

    #[test]
    fn names_must_be_plain() {
        let server = ServerConfig { keys: vec![entry("two words", "k")], ..ServerConfig::default() };
        assert_eq!(server.check_keys().unwrap_err().key, "server.keys[0].name");
    }
}
