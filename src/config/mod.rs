//! One configuration loader for every binary.
//!
//! Layers, later wins: built-in defaults, then a TOML file (`--config PATH`, else
//! `HUIYING_CONFIG`, else `./config.toml` when present), then environment variables.
//!
//! One rule names every environment variable: `[section] key` is read from
//! `SECTION_KEY` in upper case (`[smtp] host` → `SMTP_HOST`). The original service's
//! short names (`PORT`, `OPENROUTER_API_KEY`, ...) are accepted too; see [`ALIASES`].
//! An environment value is read as the type its key has (number, true/false, text,
//! comma-separated list), so a bad value is reported with the variable's name.

mod backends;
mod budget;
mod keys;
mod labels;
mod legacy;
mod load;
mod modelscope;
mod prices;
mod retention;
mod routing;
mod sections;
mod self_hosted;
mod smtp;
mod values;
mod webhooks;

use serde::{Deserialize, Serialize};

pub use backends::{DatabaseConfig, NatsConfig};
pub use budget::{BudgetConfig, Budgets, Limits};
pub use keys::{ApiKey, KeyConfig};
pub use labels::LabelsConfig;
pub use load::{ALIASES, ConfigError, Loaded, load, load_from};
pub use modelscope::ModelScopeConfig;
pub use prices::{Price, PriceTable, Prices};
pub use retention::RetentionConfig;
pub use routing::{AUTOMATIC1111_MODEL, COMFYUI_MODEL, ModelRouting, PLACEHOLDER_MODEL};
pub use sections::*;
pub use self_hosted::{Automatic1111Config, ComfyUiConfig};
pub use smtp::{AllowedRecipients, DkimSettings, DomainLimits, SmtpConfig, TlsMode};
pub use values::{CorsOrigin, Language, NatsServers, Provider, ResponseFormat, Route, Secret, TimeZoneName};
pub use webhooks::{ALERT_EVENTS, EndpointConfig, WEBHOOK_EVENTS, WebhooksConfig, endpoint_id_for, secret_key};

/// The whole configuration. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub api_keys: ApiKeysConfig,
    pub models: ModelsConfig,
    pub openrouter: OpenRouterConfig,
    pub openai: OpenAiConfig,
    pub modelscope: ModelScopeConfig,
    pub comfyui: ComfyUiConfig,
    pub automatic1111: Automatic1111Config,
    pub translation: TranslationConfig,
    pub generator: GeneratorConfig,
    pub cloudflare_r2: CloudflareR2Config,
    pub image_processing: ImageProcessingConfig,
    pub logging: LoggingConfig,
    pub smtp: SmtpConfig,
    pub nats: NatsConfig,
    pub database: DatabaseConfig,
    pub webhooks: WebhooksConfig,
    pub labels: LabelsConfig,
    pub metrics: MetricsConfig,
    pub retention: RetentionConfig,
    /// What pictures cost where providers do not say; the file's entries win per model.
    pub prices: Prices,
    /// What may be spent on paid models, per day and month.
    pub budget: BudgetConfig,
}
