//! OpenRouter: chat completions with image output.
//!
//! Request: `POST {base_url}/chat/completions` with the model, one user message with a
//! text part, and `"modalities": ["image", "text"]`. Models answer pictures in several
//! shapes; [`find_image`] knows them all (see `tests/fixtures/openrouter/`).

use serde_json::{Value, json};

use super::EditInput;
use super::model::{ImageAnswer, ImageModel};
use crate::config::Provider;
use crate::config::{OpenRouterConfig, Secret};
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;
use crate::model_api::{self as http, shorten};

#[derive(Clone)]
pub(super) struct OpenRouterClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
    http_referer: String,
    x_title: String,
}

impl OpenRouterClient {
    pub(super) fn new(config: &OpenRouterConfig, api_key: Secret) -> reqwest::Result<Self> {
        Ok(Self {
            http: http::client(config.connect_timeout, config.timeout)?,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key,
            http_referer: config.http_referer.clone(),
            x_title: config.x_title.clone(),
        })
    }
}

#[async_trait::async_trait]
impl ImageModel for OpenRouterClient {
    fn provider(&self) -> Provider {
        Provider::OpenRouter
    }

    /// Gemini's picture shape (`image_config: {aspect_ratio, image_size}`), sampling,
    /// and OpenRouter's provider routing.
    fn passes_extra(&self) -> &'static [&'static str] {
        &["image_config", "provider", "temperature", "top_p"]
    }

    async fn generate(&self, prompt: &str, model: &str, options: &GenerationOptions) -> Result<ImageAnswer, Failure> {
        self.edit(prompt, model, &[], options).await
    }

    /// Edits `inputs` (none: a generation): every picture goes into the user message as
    /// an `image_url` part (a `data:` URL), after the text.
    async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure> {
        let mut content = vec![json!({"type": "text", "text": prompt})];
        content.extend(inputs.iter().map(|input| json!({"type": "image_url", "image_url": {"url": input.data_url()}})));
        let mut body = json!({
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "modalities": ["image", "text"],
        });
        if let Some(seed) = options.seed {
            body["seed"] = json!(seed);
        }
        options.put_extra(&mut body);
        let url = format!("{}/chat/completions", self.base_url);
        let headers = [("HTTP-Referer", self.http_referer.as_str()), ("X-Title", self.x_title.as_str())];
        let answer = http::post_json(&self.http, "OpenRouter", &url, &self.api_key, &headers, &body).await?;
        let Some(message) = answer.pointer("/choices/0/message") else {
            let error = http::provider_message(&answer.to_string());
            return Err(Failure::permanent(format!("OpenRouter answered no message: {error}")));
        };
        match find_image(message) {
            Some(url) => Ok(ImageAnswer::at(url, answer.get("usage"))),
            None => {
                let said = message_text(message);
                Err(Failure::permanent(format!(
                    "model {model} answered without an image{}",
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(": \"{}\"", shorten(&http::scrub(&said), 200))
                    }
                )))
            }
        }
    }

    /// OpenRouter answers `usage.cost`, in USD, with every completion.
    fn reported_cost(&self, usage: &Value) -> Option<f64> {
        usage.get("cost").and_then(Value::as_f64)
    }
}

/// The picture in a chat message, as a `data:` URL or an http(s) link.
pub(super) fn find_image(message: &Value) -> Option<String> {
    // 1. `images: [{image_url: {url}}]`, OpenRouter's own field.
    if let Some(images) = message.get("images").and_then(Value::as_array)
        && let Some(url) = images.iter().find_map(image_item)
    {
        return Some(url);
    }
    match message.get("content") {
        // 2. Content parts: `output_image` / `image_url` / `image` items.
        Some(Value::Array(parts)) => parts
            .iter()
            .find_map(image_item)
            .or_else(|| parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).find_map(image_in_text)),
        // 3. Text holding a data URL or a markdown image link.
        Some(Value::String(text)) => image_in_text(text),
        _ => None,
    }
}

/// One image item, in any of the shapes providers use.
fn image_item(item: &Value) -> Option<String> {
    let url = match item.get("image_url") {
        Some(Value::String(url)) => Some(url.clone()),
        Some(object) => object.get("url").and_then(Value::as_str).map(String::from),
        None => item.get("url").and_then(Value::as_str).map(String::from),
    };
    if let Some(url) = url.filter(|u| !u.is_empty()) {
        return Some(url);
    }
    let source = item.get("source").unwrap_or(item);
    let data = ["b64_json", "data", "image_base64", "base64"].iter().find_map(|k| source.get(*k)?.as_str())?;
    let mime =
        ["mime_type", "media_type", "mimeType"].iter().find_map(|k| source.get(*k)?.as_str()).unwrap_or("image/png");
    Some(format!("data:{mime};base64,{data}"))
}

/// A `data:image/...;base64,...` run or a markdown `![...](url)` inside text.
fn image_in_text(text: &str) -> Option<String> {
    if let Some(start) = text.find("data:image/") {
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<'))
            .map_or(text.len(), |n| start + n);
        return Some(text[start..end].to_string());
    }
    let start = text.find("![")?;
    let open = start + text[start..].find("](")? + 2;
    let close = open + text[open..].find(')')?;
    let url = text[open..close].split_whitespace().next()?;
    url.starts_with("http").then(|| url.to_string())
}

/// The words of a message, for explaining an answer without a picture.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/openrouter/{name}", env!("CARGO_MANIFEST_DIR"));
        let answer: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        answer["choices"][0]["message"].clone()
    }

    fn png_bytes(url: &str) -> Vec<u8> {
        let (mime, bytes) = crate::fetch::decode_data_url(url).unwrap();
        assert_eq!(mime, "image/png");
        assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Png);
        bytes
    }

    #[test]
    fn every_documented_answer_shape_yields_the_picture() {
        let inline = png_bytes(&find_image(&fixture("images_data_url.json")).unwrap());
        for name in ["content_output_image_base64.json", "content_image_url_item.json", "text_data_url.json"] {
            assert_eq!(png_bytes(&find_image(&fixture(name)).unwrap()), inline, "{name}");
        }
        assert_eq!(
            find_image(&fixture("images_http_url.json")).unwrap(),
            "https://cdn.example.com/generated/lighthouse.png"
        );
        assert_eq!(
            find_image(&fixture("text_markdown_link.json")).unwrap(),
            "https://cdn.example.com/generated/lighthouse-2.png"
        );
    }

    #[test]
    fn the_cost_openrouter_reports_is_read_from_its_usage() {
        let client = OpenRouterClient::new(&Default::default(), Secret::default()).unwrap();
        let usage = serde_json::json!({"prompt_tokens": 9, "completion_tokens": 1299, "cost": 0.0387});
        assert_eq!(client.reported_cost(&usage), Some(0.0387));
        // Tokens alone are no cost: unknown, never 0.
        assert_eq!(client.reported_cost(&serde_json::json!({"total_tokens": 1308})), None);
    }

    #[test]
    fn a_text_only_answer_has_no_picture_and_its_words_explain_why() {
        let message = fixture("text_only.json");
        assert_eq!(find_image(&message), None);
        assert!(message_text(&message).starts_with("I'm sorry, but I can only describe images"));
    }
}
