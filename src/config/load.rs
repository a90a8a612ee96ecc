//! Loading: defaults, then the file, then the environment; and the checks that types
//! cannot express.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{ALERT_EVENTS, Config, Secret, WEBHOOK_EVENTS, legacy, secret_key};

/// The original service's environment names, kept working as aliases. When both an
/// alias and the `SECTION_KEY` name are set, the `SECTION_KEY` name wins.
pub const ALIASES: &[(&str, &str, &str)] = legacy::ORIGINAL_ENV;

/// Why a configuration could not be loaded. `Display` is the one line a user sees.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("bad configuration: {key} (from {origin}): {problem}")]
    Invalid { key: String, origin: String, problem: String },
}

/// A loaded configuration and the file it came from, if any.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    /// One line each: a setting of the original service that huiying reads differently
    /// or not at all, and what it does instead. Shown at start.
    pub warnings: Vec<String>,
}

/// Loads the configuration from the process environment and the file it names.
pub fn load(explicit_file: Option<&Path>) -> Result<Loaded, ConfigError> {
    load_from(explicit_file, std::env::vars())
}

/// Loads the configuration with the given environment (tests pass their own).
pub fn load_from(
    explicit_file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let env: HashMap<String, String> = env.into_iter().collect();
    let file = explicit_file
        .map(Path::to_path_buf)
        .or_else(|| env.get("HUIYING_CONFIG").filter(|p| !p.is_empty()).map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("config.toml")).filter(|p| p.is_file()));

    let mut merged = defaults_table();
    let mut origins: HashMap<String, String> = HashMap::new();
    let mut warnings = legacy::retired_env(&env);
    let mut original_file = false;
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        let retired = legacy::take_retired_keys(&mut table);
        original_file = !retired.is_empty();
        warnings.extend(retired);
        for (section, values) in table {
            let Some(values) = values.as_table() else {
                return Err(ConfigError::Invalid {
                    key: section,
                    origin: path.display().to_string(),
                    problem: "expected a [section] table".into(),
                });
            };
            for (key, value) in values {
                origins.insert(format!("{section}.{key}"), path.display().to_string());
                section_mut(&mut merged, &section).insert(key.clone(), value.clone());
            }
        }
    }
    apply_env(&mut merged, &mut origins, &env)?;

    let config: Config = serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        // `server.keys[1].name` came from where `server.keys` came from.
        let entry = key.split('[').next().unwrap_or_default();
        let origin = origins.get(&key).or_else(|| origins.get(entry)).cloned().unwrap_or_else(|| "defaults".into());
        // The message alone: the error's own text adds the path again, on a line of its own.
        ConfigError::Invalid { key, origin, problem: e.into_inner().message().to_string() }
    })?;
    let mut config = config;
    read_endpoint_secrets(&mut config, &env)?;
    let key_problem = |problem: super::keys::KeyProblem| ConfigError::Invalid {
        origin: origins.get("server.keys").cloned().unwrap_or_else(|| "defaults".into()),
        key: problem.key,
        problem: problem.problem,
    };
    config.server.read_key_envs(|name| env.get(name).cloned()).map_err(key_problem)?;
    config.server.check_keys().map_err(key_problem)?;
    validate(&config, &origins)?;
    let missing = config.cloudflare_r2.missing();
    if !config.cloudflare_r2.bucket.is_empty() && !missing.is_empty() {
        warnings.push(format!(
            "[cloudflare_r2] bucket is set but {} is not: R2 is off, pictures are kept locally only",
            missing.join(", ")
        ));
    }
    if original_file {
        // The original's `timeout` was an HTTP client's; its clients wait for the picture.
        config.server.original_timeout = true;
        warnings.push(format!(
            "this is the original service's config file: server.timeout ({} s) is not a limit on the wait, a \
             synchronous POST /generate-image waits for its picture (up to {} s) as the original did",
            config.server.timeout.as_secs(),
            crate::config::ORIGINAL_SYNC_WAIT.as_secs()
        ));
    }
    Ok(Loaded { config, file, warnings })
}

fn defaults_table() -> toml::Table {
    toml::Table::try_from(Config::default()).expect("the default configuration serializes")
}

fn section_mut<'a>(table: &'a mut toml::Table, section: &str) -> &'a mut toml::Table {
    table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("sections are tables")
}

/// Overlays environment variables onto `merged`, each read as its key's default type.
fn apply_env(
    merged: &mut toml::Table,
    origins: &mut HashMap<String, String>,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let defaults = defaults_table();
    // Aliases first, so that the SECTION_KEY names written after them win.
    let mut overrides: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for (alias, section, key) in ALIASES {
        // An empty value counts as unset, as the original read it (compose files write ${VAR:-}).
        if let Some(value) = env.get(*alias).filter(|v| !v.trim().is_empty()) {
            overrides.insert((section.to_string(), key.to_string()), (alias.to_string(), value.clone()));
        }
    }
    for (section, keys) in &defaults {
        let prefix = format!("{}_", section.to_uppercase());
        let vars: HashMap<String, String> = envy::prefixed(prefix.as_str())
            .from_iter(env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .expect("a map of strings always deserializes");
        let keys = keys.as_table().expect("sections are tables");
        for (key, value) in vars {
            // `[[server.keys]]` are tables: each key's value comes from its own key_env;
            // `[prices]` are keyed by model names, which no variable name can spell.
            let tables = (section == "server" && key == "keys") || section == "prices";
            if value.trim().is_empty() || tables {
                continue;
            }
            let name = format!("{prefix}{}", key.to_uppercase());
            if keys.contains_key(&key) {
                overrides.insert((section.clone(), key), (name, value));
            } else if let Some(path) = subtable_key(keys, &key) {
                // `SMTP_DKIM_DOMAIN` is `[smtp.dkim] domain`.
                overrides.insert((section.clone(), path), (name, value));
            }
        }
    }
    for ((section, key), (var, raw)) in overrides {
        let (table, sub) = key.split_once('.').map_or((key.as_str(), None), |(table, sub)| (table, Some(sub)));
        let template = match sub {
            Some(sub) => &defaults[&section][table][sub],
            None => &defaults[&section][table],
        };
        let value = parse_env_value(template, &raw).map_err(|problem| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            origin: format!("environment variable {var}"),
            problem,
        })?;
        origins.insert(format!("{section}.{key}"), format!("environment variable {var}"));
        let section = section_mut(merged, &section);
        match sub {
            Some(sub) => {
                let table = section.entry(table).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                table.as_table_mut().expect("a sub-table's default is a table").insert(sub.into(), value);
            }
            None => drop(section.insert(key, value)),
        }
    }
    Ok(())
}

/// `dkim_domain` → `dkim.domain` when the section has a `[section.dkim]` table with a
/// `domain` key.
fn subtable_key(keys: &toml::Table, var: &str) -> Option<String> {
    keys.iter().filter_map(|(name, value)| Some((name, value.as_table()?))).find_map(|(name, table)| {
        let sub = var.strip_prefix(name.as_str())?.strip_prefix('_')?;
        table.contains_key(sub).then(|| format!("{name}.{sub}"))
    })
}

/// Reads an environment string as the TOML type of the key's default value.
fn parse_env_value(template: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    let text = raw.trim();
    match template {
        toml::Value::Integer(_) => {
            text.parse::<i64>().map(toml::Value::Integer).map_err(|_| format!("expected a whole number, got {raw:?}"))
        }
        toml::Value::Float(_) => {
            text.parse::<f64>().map(toml::Value::Float).map_err(|_| format!("expected a number, got {raw:?}"))
        }
        toml::Value::Boolean(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        // A list of whole numbers (its default holds one) or of text.
        toml::Value::Array(items) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| match items.first() {
                Some(number @ toml::Value::Integer(_)) => parse_env_value(number, item),
                _ => Ok(toml::Value::String(item.into())),
            })
            .collect::<Result<_, _>>()
            .map(toml::Value::Array),
        _ => Ok(toml::Value::String(raw.to_string())),
    }
}

/// Checks that cannot be expressed as types.
fn validate(config: &Config, origins: &HashMap<String, String>) -> Result<(), ConfigError> {
    let invalid = |key: &str, problem: String| ConfigError::Invalid {
        key: key.to_string(),
        origin: origins.get(key).cloned().unwrap_or_else(|| "defaults".into()),
        problem,
    };
    let smtp = &config.smtp;
    if smtp.enable {
        for (key, value) in [("smtp.host", &smtp.host), ("smtp.from", &smtp.from)] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must be set when smtp.enable is true".into()));
            }
        }
        if smtp.to.is_empty() {
            return Err(invalid("smtp.to", "must name at least one recipient when smtp.enable is true".into()));
        }
        if smtp.port == 0 {
            return Err(invalid("smtp.port", "must be a port number from 1 to 65535".into()));
        }
    }
    let dkim = &smtp.dkim;
    if dkim.enabled() {
        if dkim.private_key_file.is_empty() {
            return Err(invalid(
                "smtp.dkim.private_key_file",
                "must name the private key (PEM) when smtp.dkim.domain is set; `huiying mail dkim-keygen` makes one"
                    .into(),
            ));
        }
        if dkim.selector.len() != dkim.private_key_file.len() {
            return Err(invalid(
                "smtp.dkim.selector",
                format!(
                    "give one selector per private key ({} key(s), {} selector(s)): each key is its own DNS record",
                    dkim.private_key_file.len(),
                    dkim.selector.len()
                ),
            ));
        }
    }
    let quality = config.image_processing.quality;
    if !(1..=100).contains(&quality) {
        return Err(invalid("image_processing.quality", format!("expected 1 to 100, got {quality}")));
    }
    if config.nats.ack_wait.is_zero() {
        return Err(invalid("nats.ack_wait", "must be at least 1 second".into()));
    }
    if config.nats.user.is_empty() == config.nats.password.is_set() {
        return Err(invalid("nats.user", "set nats.user and nats.password together (or neither)".into()));
    }
    if !(1..=5).contains(&config.nats.replicas) {
        return Err(invalid(
            "nats.replicas",
            format!("expected 1 to 5 (JetStream's limit), got {}", config.nats.replicas),
        ));
    }
    if config.database.url.is_set() {
        // The URL holds a password: the message names the problem, never the value.
        if let Err(e) = config.database.url.expose().parse::<tokio_postgres::Config>() {
            return Err(invalid("database.url", format!("expected postgres://user:password@host:port/database ({e})")));
        }
    }
    if config.database.pool_size == 0 {
        return Err(invalid("database.pool_size", "must be at least 1".into()));
    }
    if config.generator.max_attempts == 0 {
        return Err(invalid("generator.max_attempts", "must be at least 1".into()));
    }
    if smtp.max_attempts == 0 {
        return Err(invalid("smtp.max_attempts", "must be at least 1".into()));
    }
    validate_webhooks(config, &invalid)?;
    if let Some(missing) = crate::labels::visible::missing_glyph(&config.labels.text) {
        return Err(invalid(
            "labels.text",
            format!(
                "the built-in label font has no {missing:?}; use printable ASCII and \
                 人工智能生成合成内容由本图片制作标识"
            ),
        ));
    }
    if let Some((key, usd)) = config.prices.problem() {
        return Err(invalid("prices", format!("{key}: expected a price of 0 or more USD, got {usd}")));
    }
    if let Some((key, problem)) = config.budget_problem() {
        return Err(invalid(&key, problem));
    }
    let zone = config.smtp.timezone.trim();
    if !zone.is_empty() && jiff::tz::TimeZone::get(zone).is_err() {
        return Err(invalid("smtp.timezone", format!("{zone:?} is not an IANA time zone name such as Asia/Shanghai")));
    }
    let max_gb = config.retention.max_gb;
    if !max_gb.is_finite() || max_gb < 0.0 {
        return Err(invalid("retention.max_gb", format!("expected 0 (no bound) or more, got {max_gb}")));
    }
    let public_url = &config.server.public_url;
    if !(public_url.is_empty() || public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err(invalid("server.public_url", "must start with http:// or https://".into()));
    }
    Ok(())
}

/// `secret_env` of each webhook endpoint: its secret(s), comma-separated, from the
/// environment, so that no secret need be written in the file.
fn read_endpoint_secrets(config: &mut Config, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    for (index, endpoint) in config.webhooks.endpoints.iter_mut().enumerate() {
        if endpoint.secret_env.is_empty() {
            continue;
        }
        let Some(value) = env.get(&endpoint.secret_env).filter(|v| !v.trim().is_empty()) else {
            return Err(ConfigError::Invalid {
                key: format!("webhooks.endpoints[{index}].secret_env"),
                origin: format!("environment variable {}", endpoint.secret_env),
                problem: "is not set".into(),
            });
        };
        endpoint.secret = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Secret::new).collect();
    }
    Ok(())
}

fn validate_webhooks(config: &Config, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
    let webhooks = &config.webhooks;
    let check_secrets = |key: &str, secrets: &[Secret]| -> Result<(), ConfigError> {
        if secrets.iter().any(|secret| secret_key(secret).is_none_or(|key| key.is_empty())) {
            return Err(invalid(key, "must be whsec_ followed by base64 (as Standard Webhooks secrets are)".into()));
        }
        Ok(())
    };
    check_secrets("webhooks.request_secret", &webhooks.request_secret)?;
    if !webhooks.allowed_urls.is_empty() && webhooks.request_secret.is_empty() {
        return Err(invalid(
            "webhooks.request_secret",
            "must be set when webhooks.allowed_urls lets requests name a webhook".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (index, endpoint) in webhooks.endpoints.iter().enumerate() {
        let key = |field: &str| format!("webhooks.endpoints[{index}].{field}");
        if reqwest::Url::parse(&endpoint.url).map_or(true, |url| !matches!(url.scheme(), "http" | "https")) {
            return Err(invalid(&key("url"), format!("{:?} is not an http(s) URL", endpoint.url)));
        }
        if endpoint.secret.is_empty() {
            return Err(invalid(&key("secret"), "set secret or secret_env: every delivery is signed".into()));
        }
        check_secrets(&key("secret"), &endpoint.secret)?;
        let known = |event: &str| WEBHOOK_EVENTS.contains(&event) || ALERT_EVENTS.contains(&event);
        if let Some(unknown) = endpoint.events.iter().find(|e| !known(e)) {
            let all = [WEBHOOK_EVENTS.as_slice(), ALERT_EVENTS.as_slice()].concat().join(", ");
            return Err(invalid(&key("events"), format!("{unknown:?} is not one of {all}")));
        }
        if !names.insert(endpoint.id()) {
            return Err(invalid(&key("name"), format!("{:?} names two endpoints", endpoint.id())));
        }
    }
    Ok(())
}
