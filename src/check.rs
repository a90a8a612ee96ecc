//! `huiying config check`: the configuration loaded exactly as the services load it, then
//! each dependency it names tried once: NATS (login, streams), SMTP (connect, TLS, login;
//! nothing sent), the records database, the R2 / S3 bucket (a small object written and
//! deleted), and each model provider's key (a call that costs nothing). One line per item,
//! in `[smtp] language`; never a secret.

use std::time::Duration;

use crate::config::{Config, Language, Secret};
use crate::store::RemoteStore;
use crate::store::records::Records;

/// How one dependency answered.
pub struct Checked {
    /// `NATS nats://127.0.0.1:4222`, `SMTP smtp.qq.com:587`, ...
    pub item: String,
    /// What was found, or why it failed.
    pub outcome: Result<String, String>,
}

/// Every configured dependency, tried; the lines to print and whether all passed.
pub async fn run(config: &Config) -> (Vec<String>, bool) {
    let checked = vec![nats(config).await, smtp(config).await, database(config).await, bucket(config).await]
        .into_iter()
        .flatten()
        .chain(models(config).await)
        .collect::<Vec<_>>();
    let words = match config.smtp.language {
        Language::ZhCn => ("正常", "失败"),
        Language::En => ("ok", "FAILED"),
    };
    report(checked, words)
}

/// One line per item, `ok` or `failed` first, and whether all passed (`huiying config
/// check`, `huiying mail doctor`).
pub fn report(checked: Vec<Checked>, (ok, failed): (&str, &str)) -> (Vec<String>, bool) {
    let all_ok = checked.iter().all(|c| c.outcome.is_ok());
    let lines = checked
        .into_iter()
        .map(|c| match c.outcome {
            Ok(found) => format!("{ok:<6} {}: {found}", c.item),
            Err(why) => format!("{failed:<6} {}: {why}", c.item),
        })
        .collect();
    (lines, all_ok)
}

async fn nats(config: &Config) -> Option<Checked> {
    let item = format!("NATS {}", config.nats.url);
    let connected = crate::bus::try_connect(&config.nats, "huiying-config-check").await;
    let outcome = match connected {
        Err(error) => Err(error.to_string()),
        Ok(client) => {
            let version = client.server_info().version;
            let login = if config.nats.user.is_empty() { "no login".to_string() } else { config.nats.user.clone() };
            let js = async_nats::jetstream::new(client);
            let stream =
                match tokio::time::timeout(Duration::from_secs(5), js.get_stream(crate::contract::STREAM)).await {
                    Ok(Ok(_)) => format!("stream {} there", crate::contract::STREAM),
                    _ => format!("stream {} not there yet (the services make it at start)", crate::contract::STREAM),
                };
            Ok(format!("nats-server {version}, as {login}, {stream}"))
        }
    };
    Some(Checked { item, outcome })
}

async fn smtp(config: &Config) -> Option<Checked> {
    let smtp = &config.smtp;
    let (item, what) = match (smtp.enable, smtp.outbox_dir.as_os_str().is_empty()) {
        (true, _) => (format!("SMTP {}:{}", smtp.host, smtp.port), format!("logged in as {}", smtp.username)),
        (false, false) => ("SMTP".into(), format!("off; mail is written to {}", smtp.outbox_dir.display())),
        (false, true) => ("SMTP".into(), "off ([smtp] enable = false): no mail".into()),
    };
    let outcome = match crate::smtp::Transport::from_config(smtp) {
        Err(error) => Err(error.to_string()),
        Ok(transport) => transport.check(smtp).await.map(|()| what).map_err(|failure| failure.reason),
    };
    Some(Checked { item, outcome })
}

async fn database(config: &Config) -> Option<Checked> {
    let database = &config.database;
    let item = format!("database ({})", Records::describe_config(database));
    // A SQLite file not there yet is made by the store at start: nothing to try.
    if !database.url.is_set() && !database.path.exists() {
        let folder = database.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let outcome = match folder.is_dir() || !folder.exists() {
            true => Ok("not there yet: the store makes it at start".into()),
            false => Err(format!("{} is not a folder", folder.display())),
        };
        return Some(Checked { item, outcome });
    }
    let outcome = match Records::open(database).await {
        Ok(records) => records.query(&Default::default()).await.map(|page| format!("{} records", page.total)),
        Err(error) => Err(error),
    };
    Some(Checked { item, outcome: outcome.map_err(|e| e.to_string()) })
}

async fn bucket(config: &Config) -> Option<Checked> {
    let r2 = &config.cloudflare_r2;
    let store = match RemoteStore::from_config(r2, &config.server.public_base_url()) {
        Ok(None) => return None,
        Ok(Some(store)) => store,
        Err(error) => return Some(Checked { item: "R2 / S3".into(), outcome: Err(error.to_string()) }),
    };
    let item = format!("R2 / S3 bucket {}", r2.bucket);
    let outcome = store.check().await.map(|()| "wrote and deleted a small object".into()).map_err(|f| f.reason);
    Some(Checked { item, outcome })
}

/// Each model provider with a key: a call that costs nothing, which a wrong key fails.
async fn models(config: &Config) -> Vec<Checked> {
    let keys = &config.api_keys;
    let providers = [
        ("OpenRouter", &keys.openrouter_api_key, format!("{}/key", config.openrouter.base_url.trim_end_matches('/'))),
        ("OpenAI-compatible", &keys.openai_api_key, format!("{}/models", config.openai.base_url.trim_end_matches('/'))),
        ("ModelScope", &keys.model_scope_token, format!("{}/models", config.modelscope.base_url.trim_end_matches('/'))),
    ];
    let mut checked = Vec::new();
    for (name, key, url) in providers {
        if !key.is_set() {
            continue;
        }
        checked.push(Checked {
            item: format!("{name} key ({})", crate::redact::url(&url)),
            outcome: try_key(&url, key).await,
        });
    }
    // Models on one's own GPU take no key: whether they answer at all.
    let self_hosted = [
        ("ComfyUI", config.comfyui.is_set(), &config.comfyui.base_url, "system_stats"),
        ("Automatic1111", config.automatic1111.is_set(), &config.automatic1111.base_url, "sdapi/v1/sd-models"),
    ];
    for (name, set, base_url, path) in self_hosted {
        if set {
            let url = format!("{}/{path}", base_url.trim_end_matches('/'));
            let item = format!("{name} ({})", crate::redact::url(&url));
            checked.push(Checked { item, outcome: try_key(&url, &Secret::default()).await });
        }
    }
    checked
}

/// Whether `url` answers with success (with `key`, when it is set).
async fn try_key(url: &str, key: &Secret) -> Result<String, String> {
    let client =
        crate::model_api::client(Duration::from_secs(5), Duration::from_secs(15)).map_err(|e| e.to_string())?;
    let request = client.get(url);
    let response = if key.is_set() { request.bearer_auth(key.expose()) } else { request }.send().await;
    match response {
        Ok(response) if response.status().is_success() => Ok("accepted".into()),
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let said = crate::model_api::redact(&crate::model_api::provider_message(&body), key);
            Err(format!("answered {status}: {said}"))
        }
        Err(error) => Err(format!("unreachable: {}", crate::model_api::error_chain(&error))),
    }
}
