//! OpenAI-compatible image APIs (OpenAI, LocalAI and many hosted services):
//! `POST {base_url}/images/generations` with `model`, `prompt`, `n`, `size` and
//! `response_format`; edits are `POST {base_url}/images/edits`, multipart, with the
//! pictures as `image` (one) or `image[]` (several). The answer is `data[0].b64_json` or
//! `data[0].url`.

use serde_json::json;

use super::EditInput;
use super::model::{ImageAnswer, ImageModel};
use crate::config::{OpenAiConfig, Provider, ResponseFormat, Secret};
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;
use crate::model_api as http;

#[derive(Clone)]
pub(super) struct OpenAiClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
    response_format: ResponseFormat,
}

impl OpenAiClient {
    pub(super) fn new(config: &OpenAiConfig, api_key: Secret) -> reqwest::Result<Self> {
        Ok(Self {
            http: http::client(config.connect_timeout, config.timeout)?,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key,
            response_format: config.response_format,
        })
    }
}

#[async_trait::async_trait]
impl ImageModel for OpenAiClient {
    fn provider(&self) -> Provider {
        Provider::OpenAi
    }

    /// gpt-image's own fields.
    fn passes_extra(&self) -> &'static [&'static str] {
        &["background", "moderation", "output_compression", "output_format"]
    }

    async fn generate(&self, prompt: &str, model: &str, options: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        let mut body = json!({
            "model": model,
            "prompt": prompt,
            "n": 1,
            "response_format": self.response_format,
        });
        for (name, value) in [("size", &options.size), ("quality", &options.quality), ("style", &options.style)] {
            if let Some(value) = value {
                body[name] = json!(value);
            }
        }
        // gpt-image answers b64_json only, and refuses the parameter.
        if model.starts_with("gpt-image") {
            body.as_object_mut().expect("an object").remove("response_format");
        }
        options.put_extra(&mut body);
        let url = format!("{}/images/generations", self.base_url);
        let answer = http::post_json(&self.http, "the OpenAI-compatible API", &url, &self.api_key, &[], &body).await?;
        picture_in(&answer)
    }

    /// Edits `inputs` (every one of them is sent) as `prompt` says.
    async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure> {
        use reqwest::multipart::{Form, Part};
        let mut form = Form::new().text("model", model.to_string()).text("prompt", prompt.to_string()).text("n", "1");
        // gpt-image models always answer b64_json and refuse the parameter.
        if model.starts_with("dall-e") {
            let format = match self.response_format {
                ResponseFormat::B64Json => "b64_json",
                ResponseFormat::Url => "url",
            };
            form = form.text("response_format", format);
        }
        if let Some(size) = &options.size {
            form = form.text("size", size.clone());
        }
        for (name, value) in &options.extra {
            let text = value.as_str().map_or_else(|| value.to_string(), String::from);
            form = form.text(name.clone(), text);
        }
        let pictures = inputs.iter().filter(|input| !input.mask).count();
        let field = if pictures == 1 { "image" } else { "image[]" };
        for (n, input) in inputs.iter().enumerate() {
            let field = if input.mask { "mask" } else { field };
            let part = Part::bytes(input.bytes.clone())
                .file_name(format!("input{}.{}", n + 1, input.extension()))
                .mime_str(&input.content_type)
                .map_err(|e| Failure::permanent(format!("bad input type {}: {e}", input.content_type)))?;
            form = form.part(field, part);
        }
        let url = format!("{}/images/edits", self.base_url);
        let request = self.http.post(&url).multipart(form);
        let answer = http::json_answer("the OpenAI-compatible API", &url, &self.api_key, request).await?;
        picture_in(&answer)
    }
}

/// The picture in an images API answer: base64 or a link.
fn picture_in(answer: &serde_json::Value) -> Result<ImageAnswer, Failure> {
    let first = answer.pointer("/data/0");
    if let Some(b64) = first.and_then(|d| d.get("b64_json")).and_then(|v| v.as_str()) {
        // The type is told by the bytes later; the API does not say it.
        return Ok(ImageAnswer::at(format!("data:image/png;base64,{b64}"), answer.get("usage")));
    }
    if let Some(url) = first.and_then(|d| d.get("url")).and_then(|v| v.as_str()) {
        return Ok(ImageAnswer::at(url, answer.get("usage")));
    }
    Err(Failure::permanent(format!(
        "the OpenAI-compatible API answered without an image: {}",
        http::provider_message(&answer.to_string())
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_documented_answers_hold_a_picture_or_a_link_and_errors_a_message() {
        assert!(fixture("b64_json.json").pointer("/data/0/b64_json").unwrap().as_str().unwrap().starts_with("iVBOR"));
        assert!(fixture("url.json").pointer("/data/0/url").unwrap().as_str().unwrap().starts_with("https://"));
        let error = crate::model_api::provider_message(&fixture("content_policy_error.json").to_string());
        assert_eq!(error, "Your request was rejected as a result of our safety system.");
    }
}
