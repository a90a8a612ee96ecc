//! Configuration: defaults, a file, environment variables that win, and clear errors.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use huiying::config::{self, ConfigError, CorsOrigin, ImageFormat, TlsMode};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

const SEED_QQ: &str = r#"
[smtp]
# SMTP 邮件配置 (QQ邮箱示例)
host = "smtp.qq.com"
port = 587
username = "your_qq_email@qq.com"
password = "your_qq_email_auth_code"  # QQ邮箱需要使用授权码而非密码
from = "your_qq_email@qq.com"
to = "recipient@example.com"
enable = true  # 设置为true以启用邮件通知功能
"#;

#[test]
fn the_seeds_smtp_section_loads_as_written() {
    let seed = file(SEED_QQ);
    let config = config::load_from(Some(seed.path()), env(&[])).unwrap().config;
    let smtp = &config.smtp;
    assert_eq!((smtp.host.as_str(), smtp.port, smtp.enable), ("smtp.qq.com", 587, true));
    assert_eq!((smtp.username.as_str(), smtp.from.as_str()), ("your_qq_email@qq.com", "your_qq_email@qq.com"));
    assert_eq!(smtp.password.expose(), "your_qq_email_auth_code");
    assert_eq!(smtp.to, vec!["recipient@example.com"]);
    assert_eq!(smtp.effective_tls(), TlsMode::Starttls);
    // Untouched sections keep their defaults.
    assert_eq!(config.server.port, 8000);
}

#[test]
fn the_seeds_environment_variables_configure_smtp_without_a_file() {
    let config = config::load_from(
        None,
        env(&[
            ("SMTP_HOST", "smtp.163.com"),
            ("SMTP_PORT", "465"),
            ("SMTP_USERNAME", "me@163.com"),
            ("SMTP_PASSWORD", "auth-code"),
            ("SMTP_FROM", "me@163.com"),
            ("SMTP_TO", "a@example.com, b@example.com"),
            ("SMTP_ENABLE", "true"),
        ]),
    )
    .unwrap()
    .config;
    let smtp = &config.smtp;
    assert_eq!((smtp.host.as_str(), smtp.port, smtp.enable), ("smtp.163.com", 465, true));
    assert_eq!(smtp.password.expose(), "auth-code");
    assert_eq!(smtp.to, vec!["a@example.com", "b@example.com"]);
    assert_eq!(smtp.effective_tls(), TlsMode::Tls, "465 means implicit TLS");
}

#[test]
fn environment_variables_win_over_the_file_and_follow_one_naming_rule() {
    let seed = file(SEED_QQ);
    let config = config::load_from(
        Some(seed.path()),
        env(&[
            ("SMTP_PORT", "2525"),
            ("SMTP_TLS", "none"),
            ("SERVER_PUBLIC_URL", "https://img.example.com"),
            ("DATABASE_PATH", "/var/lib/huiying/records.db"),
            ("NATS_URL", "nats://10.0.0.5:4222"),
            ("IMAGE_PROCESSING_QUALITY", "70"),
            ("IMAGE_PROCESSING_FORMAT", "webp"),
            ("CLOUDFLARE_R2_BUCKET", "pictures"),
            ("CLOUDFLARE_R2_PUBLIC_URL", "https://pics.example.com"),
        ]),
    )
    .unwrap()
    .config;
    assert_eq!(config.smtp.port, 2525);
    assert_eq!(config.smtp.host, "smtp.qq.com", "from the file");
    assert_eq!(config.smtp.tls, TlsMode::None);
    assert_eq!(config.server.public_base_url(), "https://img.example.com");
    assert_eq!(config.database.path, Path::new("/var/lib/huiying/records.db"));
    assert_eq!(config.nats.url.to_string(), "nats://10.0.0.5:4222");
    assert_eq!(config.image_processing.quality, 70);
    assert_eq!(config.image_processing.format, huiying::config::ImageFormat::Webp);
    assert_eq!(config.cloudflare_r2.bucket, "pictures");
}

#[test]
fn the_original_short_names_work_and_the_long_names_beat_them() {
    let config = config::load_from(
        None,
        env(&[
            ("PORT", "9000"),
            ("IMAGES_DIR", "/srv/pictures"),
            ("TIMEOUT", "120"),
            ("OPENROUTER_API_KEY", "sk-or-1"),
            ("MODEL_SCOPE_TOKEN", "ms-1"),
            ("SERVER_TIMEOUT", "90"),
        ]),
    )
    .unwrap()
    .config;
    assert_eq!(config.server.port, 9000);
    assert_eq!(config.server.images_dir, Path::new("/srv/pictures"));
    assert_eq!(config.server.timeout, Duration::from_secs(90), "SERVER_TIMEOUT wins over TIMEOUT");
    assert_eq!(config.api_keys.openrouter_api_key.expose(), "sk-or-1");
    assert_eq!(config.api_keys.model_scope_token.expose(), "ms-1");
}

#[test]
fn huiying_config_names_the_file_and_an_explicit_path_beats_it() {
    let first = file("[server]\nport = 7001\n");
    let second = file("[server]\nport = 7002\n");
    let named = env(&[("HUIYING_CONFIG", first.path().to_str().unwrap())]);
    assert_eq!(config::load_from(None, named.clone()).unwrap().config.server.port, 7001);
    assert_eq!(config::load_from(Some(second.path()), named).unwrap().config.server.port, 7002);
}

#[test]
fn a_bad_value_is_one_error_naming_the_key_and_where_it_came_from() {
    let error = config::load_from(None, env(&[("SMTP_PORT", "58x")])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad configuration: smtp.port (from environment variable SMTP_PORT): expected a whole number, got \"58x\""
    );

    let bad_tls = file("[smtp]\ntls = \"ssl\"\n");
    let error = config::load_from(Some(bad_tls.path()), env(&[])).unwrap_err().to_string();
    assert!(error.starts_with("bad configuration: smtp.tls (from "), "{error}");
    assert!(error.contains("unknown variant `ssl`") && error.contains("`starttls`"), "{error}");

    let error = config::load_from(None, env(&[("SMTP_PORT", "70000")])).unwrap_err().to_string();
    assert!(error.contains("smtp.port") && error.contains("70000"), "{error}");

    let typo = file("[smtp]\npasword = \"x\"\n");
    let error = config::load_from(Some(typo.path()), env(&[])).unwrap_err().to_string();
    assert!(error.contains("unknown field `pasword`"), "{error}");

    let error = config::load_from(None, env(&[("SMTP_ENABLE", "true")])).unwrap_err().to_string();
    assert!(error.contains("smtp.host") && error.contains("must be set"), "{error}");

    let error = config::load_from(None, env(&[("SERVER_CORS_ORIGINS", "app.example.com")])).unwrap_err().to_string();
    assert!(error.contains("server.cors_origins") && error.contains("https://app.example.com"), "{error}");

    let error = config::load_from(None, env(&[("NATS_USER", "ingest")])).unwrap_err().to_string();
    assert!(error.contains("nats.user") && error.contains("nats.password"), "{error}");

    let missing = config::load_from(Some(Path::new("/nonexistent/huiying.toml")), env(&[])).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
}

#[test]
fn api_keys_and_origins_are_lists_in_the_file_and_comma_separated_in_the_environment() {
    let loaded = config::load_from(
        None,
        env(&[("SERVER_API_KEYS", "key-one, key-two"), ("SERVER_CORS_ORIGINS", "https://a.example.com,*")]),
    )
    .unwrap();
    let keys: Vec<&str> = loaded.config.server.api_keys.iter().map(|k| k.expose()).collect();
    assert_eq!(keys, ["key-one", "key-two"]);
    assert_eq!(loaded.config.server.cors_origins, [CorsOrigin::Exact("https://a.example.com".into()), CorsOrigin::Any]);
    assert!(!format!("{:?}", loaded.config).contains("key-one"), "API keys are secrets");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = config::load_from(
        None,
        env(&[
            ("SMTP_PASSWORD", "qq-auth-code-123"),
            ("OPENROUTER_API_KEY", "sk-or-secret"),
            ("CLOUDFLARE_R2_ACCESS_KEY_SECRET", "r2-secret"),
        ]),
    )
    .unwrap()
    .config;
    let shown = format!("{config:?} {config:#?}");
    for secret in ["qq-auth-code-123", "sk-or-secret", "r2-secret"] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug output");
    }
    assert!(shown.contains("Secret(***)"));
}

#[test]
fn the_example_config_loads_and_lists_every_key() {
    let example = Path::new(crate::helpers::REPO).join("config.toml.example");
    let text = std::fs::read_to_string(&example).unwrap();
    // Every key appears (commented out or not) with its env var named beside it.
    let defaults = toml::Table::try_from(huiying::config::Config::default()).unwrap();
    for (section, keys) in &defaults {
        assert!(text.contains(&format!("[{section}]")), "section [{section}] missing");
        for key in keys.as_table().unwrap().keys() {
            // [prices] are keyed by model name: listed, not read from the environment.
            if section == "prices" {
                assert!(text.contains(&format!("\"{key}\" =")), "[prices] {key} missing");
                continue;
            }
            let var = format!("{}_{}", section.to_uppercase(), key.to_uppercase());
            // A sub-table such as [smtp.dkim]: each of its keys, as SMTP_DKIM_DOMAIN.
            if let Some(table) = keys[key].as_table().filter(|_| key != "keys") {
                // Keyed by name ([smtp.domains."qq.com"]) or fixed ([smtp.dkim]).
                assert!(text.contains(&format!("[{section}.{key}")), "[{section}.{key}] missing");
                for sub in table.keys() {
                    assert!(text.contains(&format!("{sub} =")), "[{section}.{key}] {sub} missing");
                    let var = format!("{var}_{}", sub.to_uppercase());
                    assert!(text.contains(&var), "env var {var} not mentioned");
                }
                continue;
            }
            assert!(text.contains(&format!("{key} =")), "[{section}] {key} missing");
            assert!(text.contains(&var), "env var {var} not mentioned");
        }
    }
    config::load_from(Some(&example), env(&[])).unwrap();
}

#[test]
fn a_binary_with_a_bad_value_exits_non_zero_with_one_line_and_no_panic() {
    for subcommand in ["mailer", "ingest", "up"] {
        let program = subcommand;
        let mut command = Command::new(env!("CARGO_BIN_EXE_huiying"));
        command.arg(subcommand);
        let output = command
            .env("SMTP_PORT", "58x")
            .env("SMTP_PASSWORD", "do-not-print-me")
            .env_remove("HUIYING_CONFIG")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{program}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("smtp.port") && stderr.contains("SMTP_PORT") && stderr.contains("58x"), "{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("do-not-print-me"));
    }
}

/// The original service's `config.example.toml`, as its repository has it.
fn original_example() -> std::path::PathBuf {
    Path::new(crate::helpers::REPO).join("tests/fixtures/original/config.example.toml")
}

#[test]
fn the_original_example_config_loads_with_one_note_per_setting_read_differently() {
    let loaded = config::load_from(Some(&original_example()), env(&[])).unwrap();
    let notes = loaded.warnings.join("\n");
    for expected in ["server.max_retries", "logging.format", "logging.file", "[cloudflare_d1]", "R2 is off", "600 s"] {
        assert!(notes.contains(expected), "no note about {expected}: {notes}");
    }
    assert_eq!(loaded.warnings.len(), 6, "{notes}");
    let config = loaded.config;
    assert_eq!((config.server.port, config.image_processing.quality), (8000, 85));
    assert_eq!(config.server.images_dir, Path::new("public/static/images"));
    assert!(!config.cloudflare_r2.is_on(), "the original left R2 off without credentials");
    assert_eq!(config.server.sync_wait(), Duration::from_secs(600), "an original client waits for its picture");

    // A misspelt key is still an error, in an original file too.
    let text = std::fs::read_to_string(original_example()).unwrap().replace("max_retries = 3", "max_retrys = 3");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let error = config::load_from(Some(file.path()), env(&[])).unwrap_err().to_string();
    assert!(error.contains("max_retrys"), "{error}");
}

#[test]
fn image_formats_are_read_in_any_case_and_jpg_is_jpeg() {
    for (value, expected) in [("jpg", ImageFormat::Jpeg), ("JPEG", ImageFormat::Jpeg), ("Png", ImageFormat::Png)] {
        let config = config::load_from(None, env(&[("IMAGE_FORMAT", value)])).unwrap().config;
        assert_eq!(config.image_processing.format, expected, "{value}");
    }
    assert!(config::load_from(None, env(&[("IMAGE_FORMAT", "gif")])).is_err());
}

#[test]
fn each_original_environment_name_sets_its_key_and_an_empty_one_changes_nothing() {
    let config = config::load_from(
        None,
        env(&[
            ("DEFAULT_OPENROUTER_MODEL", "vendor/model-a"),
            ("MODEL_SCOPE_MODEL", "vendor/translator"),
            ("IMAGE_MAX_WIDTH", "800"),
            ("IMAGE_MAX_HEIGHT", "600"),
            ("IMAGE_QUALITY", "70"),
            ("IMAGE_FORMAT", "png"),
            ("IMAGE_ENABLE_RESIZE", "false"),
            ("LOG_LEVEL", "debug"),
            ("CLOUDFLARE_R2_ACCOUNT_KEY_ID", "key-id"),
            ("CLOUDFLARE_R2_ACCOUNT_KEY_SECRET", "key-secret"),
            ("CLOUDFLARE_R2_URL", "https://acct.r2.cloudflarestorage.com"),
        ]),
    )
    .unwrap()
    .config;
    assert_eq!(config.models.default_openrouter_model, "vendor/model-a");
    assert_eq!(config.models.model_scope_model, "vendor/translator");
    let image = &config.image_processing;
    assert_eq!((image.max_width, image.max_height, image.quality), (800, 600, 70));
    assert_eq!((image.format, image.enable_resize), (ImageFormat::Png, false));
    assert_eq!(config.logging.level, "debug");
    let r2 = &config.cloudflare_r2;
    assert_eq!((r2.access_key_id.as_str(), r2.access_key_secret.expose()), ("key-id", "key-secret"));
    assert_eq!(r2.endpoint, "https://acct.r2.cloudflarestorage.com");

    let loaded = config::load_from(None, env(&[("MAX_RETRIES", "5")])).unwrap();
    assert!(loaded.warnings.iter().any(|w| w.contains("MAX_RETRIES")), "{:?}", loaded.warnings);

    // Compose files write ${VAR:-}: an empty value is no value.
    let defaults = config::load_from(None, env(&[])).unwrap().config;
    let emptied = config::load_from(
        None,
        env(&[("PORT", ""), ("IMAGE_QUALITY", ""), ("SMTP_HOST", " "), ("DEFAULT_OPENROUTER_MODEL", "")]),
    )
    .unwrap()
    .config;
    assert_eq!(emptied.server.port, defaults.server.port);
    assert_eq!(emptied.image_processing.quality, defaults.image_processing.quality);
    assert_eq!(emptied.smtp.host, defaults.smtp.host);
    assert_eq!(emptied.models.default_openrouter_model, defaults.models.default_openrouter_model);
}

#[test]
fn a_cluster_is_a_list_of_servers_in_the_file_or_the_environment() {
    let cluster = file("[nats]\nurl = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\nreplicas = 3\n");
    let config = config::load_from(Some(cluster.path()), env(&[])).unwrap().config;
    assert_eq!(config.nats.url.urls(), ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]);
    assert_eq!(config.nats.replicas, 3);

    let config =
        config::load_from(None, env(&[("NATS_URL", "nats://a:4222, nats://b:4222,nats://c:4222")])).unwrap().config;
    assert_eq!(config.nats.url.urls(), ["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
    assert_eq!(config.nats.replicas, 1, "one replica unless asked");

    let error = config::load_from(None, env(&[("NATS_URL", ",")])).unwrap_err().to_string();
    assert!(error.contains("nats.url") && error.contains("at least one NATS server"), "{error}");
    let error = config::load_from(None, env(&[("NATS_REPLICAS", "7")])).unwrap_err().to_string();
    assert!(error.contains("nats.replicas") && error.contains("1 to 5"), "{error}");
}

#[test]
fn a_postgresql_url_is_checked_at_start_without_showing_its_password() {
    let error = config::load_from(None, env(&[("DATABASE_URL", "postgres://huiying:s3cret@db:notaport/huiying")]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("database.url"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    let config =
        config::load_from(None, env(&[("DATABASE_URL", "postgres://huiying:s3cret@db:5432/huiying")])).unwrap().config;
    assert!(config.database.url.is_set());
    assert!(!format!("{:?}", config.database).contains("s3cret"));
}

#[test]
fn named_keys_load_from_the_file_with_their_values_from_the_environment() {
    let keys = file(
        r#"
[server]
api_keys = ["short-key"]
timezone = "Asia/Shanghai"

[[server.keys]]
name = "design"
key_env = "HUIYING_KEY_DESIGN"
jobs_per_day = 500

[[server.keys]]
name = "root"
key = "root-key"
admin = true
"#,
    );
    let env = env(&[("HUIYING_KEY_DESIGN", "design-key"), ("SERVER_ADMIN_KEYS", "admin-key")]);
    let server = config::load_from(Some(keys.path()), env).unwrap().config.server;
    let named: Vec<(String, String, bool)> =
        server.api_keys().into_iter().map(|k| (k.name, k.secret.expose().to_string(), k.admin)).collect();
    assert_eq!(
        named,
        [
            ("design".into(), "design-key".into(), false),
            ("root".into(), "root-key".into(), true),
            ("key-1".into(), "short-key".into(), false),
            ("admin-1".into(), "admin-key".into(), true),
        ]
    );
    assert_eq!(server.timezone.name(), "Asia/Shanghai");
}

#[test]
fn a_malformed_or_repeated_key_stops_the_program_naming_its_place_and_field() {
    let problems = [
        (
            "[[server.keys]]\nname = \"a\"\nkey = \"k1\"\n[[server.keys]]\nname = \"b\"\nkey = \"k2\"\nadmn = true\n",
            "server.keys[1]",
            "admn",
        ),
        ("[[server.keys]]\nname = \"a\"\nkey = \"k1\"\njobs_per_day = -1\n", "server.keys[0].jobs_per_day", "-1"),
        ("[[server.keys]]\nname = \"a b\"\nkey = \"k1\"\n", "server.keys[0].name", "\"a b\""),
        ("[[server.keys]]\nname = \"a\"\n", "server.keys[0].key", "key_env"),
        (
            "[[server.keys]]\nname = \"a\"\nkey_env = \"NOT_SET_ANYWHERE\"\n",
            "server.keys[0].key_env",
            "NOT_SET_ANYWHERE",
        ),
        (
            "[[server.keys]]\nname = \"a\"\nkey = \"k1\"\n[[server.keys]]\nname = \"a\"\nkey = \"k2\"\n",
            "server.keys",
            "\"a\" is given to two keys",
        ),
        ("[server]\napi_keys = [\"same\"]\nadmin_keys = [\"same\"]\n", "server.keys", "admin-1"),
        ("[server]\ntimezone = \"Mars/Olympus\"\n", "server.timezone", "Mars/Olympus"),
    ];
    for (text, place, problem) in problems {
        let written = file(text);
        let error = config::load_from(Some(written.path()), env(&[])).unwrap_err().to_string();
        assert!(error.contains(place) && error.contains(problem), "{text}\n→ {error}");
        assert!(!error.contains("k1") && !error.contains("\"same\""), "no key in the message: {error}");
        assert_eq!(error.lines().count(), 1);
    }
    // The program says it in one line and stops.
    let written = file(problems[0].0);
    let output = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .arg("--config")
        .arg(written.path())
        .arg("ingest")
        .env_remove("HUIYING_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("server.keys[1]") && stderr.contains("admn"), "{stderr}");
}

#[test]
fn prices_from_the_file_replace_a_models_entry_and_a_negative_one_stops_the_program() {
    let priced = file("[prices]\n\"dall-e-3\" = 0.05\n\"my/model\" = { low = 0.01, high = 0.1 }\n");
    let prices = config::load_from(Some(priced.path()), env(&[])).unwrap().config.prices;
    assert_eq!(prices.per_picture("dall-e-3", Some("hd")), Some(0.05), "the file's entry, whole");
    assert_eq!(prices.per_picture("my/model", Some("high")), Some(0.1));
    assert_eq!(prices.per_picture("gpt-image-1", Some("high")), Some(0.167), "the shipped ones stay");
    for (text, named) in [
        ("[prices]\n\"dall-e-3\" = -0.05\n", "\"dall-e-3\""),
        ("[prices]\n\"gpt-image-1\" = { high = -1 }\n", "\"gpt-image-1\".high"),
        ("[prices]\n\"dall-e-3\" = \"cheap\"\n", "prices.dall-e-3"),
    ] {
        let written = file(text);
        let error = config::load_from(Some(written.path()), env(&[])).unwrap_err().to_string();
        assert!(error.contains(named), "{text} → {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
}

#[test]
fn a_negative_or_unnumbered_budget_stops_the_program_with_one_line_naming_it() {
    let keyed = "[[server.keys]]\nname = \"design\"\nkey = \"k\"\n";
    for (text, environment, named) in [
        ("[budget]\ndaily_usd = -1\n", vec![], "budget.daily_usd"),
        ("[budget]\nmonthly_usd = \"lots\"\n", vec![], "budget.monthly_usd"),
        ("", vec![("BUDGET_DAILY_USD", "ten")], "BUDGET_DAILY_USD"),
        ("[budget]\nalert_percent = 0\n", vec![], "budget.alert_percent"),
        (&*format!("{keyed}daily_budget_usd = -0.5\n"), vec![], "server.keys[0].daily_budget_usd"),
        (&*format!("{keyed}monthly_budget_usd = \"x\"\n"), vec![], "monthly_budget_usd"),
    ] {
        let written = file(text);
        let error = config::load_from(Some(written.path()), env(&environment)).unwrap_err().to_string();
        assert!(error.contains(named), "{text} {environment:?} → {error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }
    let fine = file(&format!("[budget]\ndaily_usd = 2.5\n{keyed}monthly_budget_usd = 40\n"));
    let budgets = config::load_from(Some(fine.path()), env(&[("BUDGET_MONTHLY_USD", "90")])).unwrap().config.budgets();
    assert_eq!((budgets.global.day, budgets.global.month), (Some(2_500_000), Some(90_000_000)));
    assert_eq!(budgets.of_key(Some("design")).month, Some(40_000_000));
}

#[test]
fn a_readers_time_zone_the_zone_database_does_not_know_stops_the_program_naming_it() {
    let written = file("[smtp]\ntimezone = \"Mars/Olympus\"\n");
    let error = config::load_from(Some(written.path()), env(&[])).unwrap_err().to_string();
    assert!(error.contains("smtp.timezone") && error.contains("Mars/Olympus"), "{error}");
    let fine = file("[smtp]\ntimezone = \"Asia/Shanghai\"\n");
    assert!(config::load_from(Some(fine.path()), env(&[("SMTP_TIMEZONE", "Europe/Berlin")])).is_ok());
}

#[test]
fn dkim_is_set_in_its_own_table_or_by_smtp_dkim_variables_and_a_key_without_a_selector_is_refused() {
    let config = config::load_from(
        None,
        env(&[
            ("SMTP_DKIM_DOMAIN", "example.com"),
            ("SMTP_DKIM_SELECTOR", "rsa,ed"),
            ("SMTP_DKIM_PRIVATE_KEY_FILE", "rsa.pem,ed.pem"),
        ]),
    )
    .unwrap()
    .config;
    assert_eq!(config.smtp.dkim.domain, "example.com");
    assert_eq!(config.smtp.dkim.selector, ["rsa", "ed"]);
    assert_eq!(config.smtp.dkim.private_key_file, ["rsa.pem", "ed.pem"]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[smtp.dkim]\ndomain = \"example.com\"\nprivate_key_file = [\"a.pem\", \"b.pem\"]\n")
        .unwrap();
    let error = config::load_from(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(error.contains("smtp.dkim.selector") && error.contains("one selector per private key"), "{error}");
}
