//! The original service's configuration, accepted as it is: its file's keys that mean
//! nothing here are taken out with one warning each (a misspelt key is still an error),
//! and its environment names are aliases.

/// Keys of the original's config file that huiying has no use for, and what it does instead.
const RETIRED: &[(&str, &str, &str)] = &[
    (
        "server",
        "max_retries",
        "huiying retries by itself ([generator] max_attempts, [smtp] max_attempts, [webhooks] retry_schedule)",
    ),
    ("logging", "format", "huiying writes text log lines to stderr"),
    ("logging", "file", "huiying logs to stderr; let your supervisor (systemd, docker) keep the file"),
    (
        "cloudflare_d1",
        "*",
        "huiying keeps the records in its own database ([database] path); bring the D1 history over with \
         `huiying records import <dump.sql>`",
    ),
];

/// Environment names of those keys.
const RETIRED_ENV: &[(&str, &str)] = &[
    ("MAX_RETRIES", "server.max_retries"),
    ("LOG_FORMAT", "logging.format"),
    ("LOG_FILE", "logging.file"),
    ("CLOUDFLARE_D1_ACCOUNT_ID", "cloudflare_d1.account_id"),
    ("CLOUDFLARE_D1_API_TOKEN", "cloudflare_d1.api_token"),
    ("CLOUDFLARE_D1_DATABASE_ID", "cloudflare_d1.database_id"),
    ("CLOUDFLARE_D1_DATABASE_NAME", "cloudflare_d1.database_name"),
];

/// The original's environment names, as `(name, section, key)`.
pub(super) const ORIGINAL_ENV: &[(&str, &str, &str)] = &[
    ("PORT", "server", "port"),
    ("IMAGES_DIR", "server", "images_dir"),
    ("TIMEOUT", "server", "timeout"),
    ("OPENROUTER_API_KEY", "api_keys", "openrouter_api_key"),
    ("MODEL_SCOPE_TOKEN", "api_keys", "model_scope_token"),
    ("OPENAI_API_KEY", "api_keys", "openai_api_key"),
    ("DEFAULT_OPENROUTER_MODEL", "models", "default_openrouter_model"),
    ("MODEL_SCOPE_MODEL", "models", "model_scope_model"),
    ("IMAGE_MAX_WIDTH", "image_processing", "max_width"),
    ("IMAGE_MAX_HEIGHT", "image_processing", "max_height"),
    ("IMAGE_QUALITY", "image_processing", "quality"),
    ("IMAGE_FORMAT", "image_processing", "format"),
    ("IMAGE_ENABLE_RESIZE", "image_processing", "enable_resize"),
    ("LOG_LEVEL", "logging", "level"),
    ("CLOUDFLARE_R2_ACCOUNT_KEY_ID", "cloudflare_r2", "access_key_id"),
    ("CLOUDFLARE_R2_ACCOUNT_KEY_SECRET", "cloudflare_r2", "access_key_secret"),
    ("CLOUDFLARE_R2_URL", "cloudflare_r2", "endpoint"),
];

/// Takes the retired keys out of a config file's table; one warning per key found.
pub(super) fn take_retired_keys(table: &mut toml::Table) -> Vec<String> {
    let mut warnings = Vec::new();
    for (section, key, instead) in RETIRED {
        let Some(values) = table.get_mut(*section).and_then(toml::Value::as_table_mut) else { continue };
        if *key == "*" {
            table.remove(*section);
            warnings.push(format!("[{section}] is the original service's; {instead}"));
        } else if values.remove(*key).is_some() {
            warnings.push(format!("{section}.{key} is the original service's and is not used: {instead}"));
        }
    }
    warnings
}

/// One warning per retired environment name that is set (and not empty).
pub(super) fn retired_env(env: &std::collections::HashMap<String, String>) -> Vec<String> {
    RETIRED_ENV
        .iter()
        .filter(|(name, _)| env.get(*name).is_some_and(|v| !v.trim().is_empty()))
        .map(|(name, key)| format!("{name} ({key}) is the original service's and is not used"))
        .collect()
}
