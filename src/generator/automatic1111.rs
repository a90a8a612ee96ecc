//! The Automatic1111 / Forge web UI's API (started with `--api`), on one's own GPU:
//! `POST /sdapi/v1/txt2img` draws, `POST /sdapi/v1/img2img` edits one picture
//! (`init_images`); both answer `{"images": [<base64 PNG>], "parameters", "info"}`.
//! `automatic1111/<checkpoint>` asks for that checkpoint (`override_settings`);
//! `automatic1111/loaded` draws with whichever the UI has loaded.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::EditInput;
use super::model::{ImageAnswer, ImageModel, Picture};
use crate::config::{AUTOMATIC1111_MODEL, Automatic1111Config, Provider, Secret};
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;
use crate::model_api as http;

const PROVIDER: &str = "Automatic1111";

pub(super) struct Automatic1111Client {
    http: reqwest::Client,
    base_url: String,
}

impl Automatic1111Client {
    pub(super) fn new(config: &Automatic1111Config) -> reqwest::Result<Self> {
        Ok(Self {
            http: http::client(Duration::from_secs(10), config.timeout)?,
            base_url: config.base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Calls `/sdapi/v1/<route>` with `body` and the request's options, and decodes its
    /// first picture.
    async fn draw(
        &self,
        route: &str,
        model: &str,
        mut body: Value,
        options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure> {
        body["negative_prompt"] = json!(options.negative_prompt.as_deref().unwrap_or(""));
        // -1: the UI picks a seed.
        body["seed"] = json!(options.seed.map_or(-1, |seed| seed as i64));
        body["batch_size"] = json!(1);
        body["n_iter"] = json!(1);
        if let Some((width, height)) = options.dimensions() {
            body["width"] = json!(width);
            body["height"] = json!(height);
        }
        if let Some(checkpoint) = checkpoint(model) {
            body["override_settings"] = json!({"sd_model_checkpoint": checkpoint});
        }
        options.put_extra(&mut body);
        let url = format!("{}/sdapi/v1/{route}", self.base_url);
        let answer = http::post_json(&self.http, PROVIDER, &url, &Secret::default(), &[], &body).await?;
        let Some(picture) = answer.pointer("/images/0").and_then(Value::as_str) else {
            let said = http::provider_message(&answer.to_string());
            return Err(Failure::permanent(format!("Automatic1111 answered without a picture: {said}")));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(picture.trim())
            .map_err(|e| Failure::permanent(format!("Automatic1111's picture is not base64: {e}")))?;
        Ok(ImageAnswer { picture: Picture::Bytes(bytes), usage: None })
    }
}

#[async_trait::async_trait]
impl ImageModel for Automatic1111Client {
    fn provider(&self) -> Provider {
        Provider::Automatic1111
    }

    /// The sampler's own settings.
    fn passes_extra(&self) -> &'static [&'static str] {
        &["cfg_scale", "denoising_strength", "sampler_name", "scheduler", "steps", "styles"]
    }

    async fn generate(&self, prompt: &str, model: &str, options: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        self.draw("txt2img", model, json!({"prompt": prompt}), options).await
    }

    /// One picture ([`Provider::max_edit_inputs`] is 1, checked before the call), drawn
    /// over at the UI's default strength unless `extra.denoising_strength` says otherwise,
    /// at the picture's own size unless the request names one.
    async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure> {
        let [input] = inputs else {
            return Err(Failure::refused(format!("model {model} edits exactly one picture")));
        };
        let mut body = json!({
            "prompt": prompt,
            "init_images": [base64::engine::general_purpose::STANDARD.encode(&input.bytes)],
        });
        if let Ok((width, height)) = image::ImageReader::new(std::io::Cursor::new(&input.bytes))
            .with_guessed_format()
            .map_err(image::ImageError::IoError)
            .and_then(|reader| reader.into_dimensions())
        {
            body["width"] = json!(width);
            body["height"] = json!(height);
        }
        self.draw("img2img", model, body, options).await
    }
}

/// The checkpoint `model` asks for: what follows its first `/`, unless it asks for the
/// loaded one.
fn checkpoint(model: &str) -> Option<&str> {
    let (_, name) = model.split_once('/')?;
    (model != AUTOMATIC1111_MODEL && !name.is_empty()).then_some(name)
}
