//! Values checked once where they enter (HTTP or NATS) and trusted from then on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 4000;

/// Why a value was refused; `Display` is the sentence a client sees in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct InvalidValue {
    /// The request field at fault (`prompt`, `model`, `size`, ...).
    pub field: &'static str,
    pub problem: String,
}

impl InvalidValue {
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self { field, problem: problem.into() }
    }
}

/// A prompt: not blank, at most [`MAX_PROMPT_CHARS`], no control characters but line
/// breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prompt(String);

impl Prompt {
    pub fn parse(text: impl Into<String>) -> Result<Self, InvalidValue> {
        let text = text.into();
        let invalid = |problem: String| Err(InvalidValue::new("prompt", problem));
        if text.trim().is_empty() {
            return invalid("prompt must not be empty".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return invalid(format!(
                "prompt holds the control character U+{:04X}; only line breaks and tabs are allowed",
                c as u32
            ));
        }
        let chars = text.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return invalid(format!("prompt is {chars} characters long; at most {MAX_PROMPT_CHARS} are allowed"));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A model name: printable ASCII without spaces, quotes or backslashes, at most 200 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidValue> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 200
            && name.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        if !valid {
            return Err(InvalidValue::new(
                "model",
                format!("model {name:?} is not a model name (letters, digits and -_./:@ only, no spaces)"),
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A job id: also a key-value key, so letters, digits, `-` and `_` only (1 to 128).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    pub fn parse(id: impl Into<String>) -> Result<Self, InvalidValue> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(InvalidValue::new("id", format!("job id {id:?} may hold only letters, digits, - and _")));
        }
        Ok(Self(id))
    }

    /// A new random id, as ingest gives each job.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, InvalidValue> {
                Self::parse(value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        // Reads as the text it holds (so a checked value goes wherever text is read);
        // making one goes through `parse`.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }
        // Unit tests write checked values as literals; one that does not parse fails the test.
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self::parse(text).unwrap_or_else(|invalid| panic!("{invalid}"))
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "String".into()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                String::json_schema(generator)
            }
            fn inline_schema() -> bool {
                true
            }
        }
    )*};
}

string_newtype!(Prompt, ModelName, JobId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_refused_for_blankness_control_characters_and_length() {
        assert!(Prompt::parse("一只猫\n在窗台上\t").is_ok());
        assert_eq!(Prompt::parse("  ").unwrap_err().problem, "prompt must not be empty");
        assert!(Prompt::parse("a\u{7}b").unwrap_err().problem.contains("U+0007"));
        assert!(Prompt::parse("x".repeat(MAX_PROMPT_CHARS + 1)).is_err());
        assert!(Prompt::parse("猫".repeat(MAX_PROMPT_CHARS)).is_ok());
    }

    #[test]
    fn model_names_and_job_ids_keep_to_their_alphabets() {
        assert!(ModelName::parse("google/gemini-2.5-flash-image-preview:free").is_ok());
        assert!(ModelName::parse("a model").is_err());
        assert!(JobId::parse("0b6f-x_1").is_ok());
        assert!(JobId::parse("a.b").is_err());
        assert!(JobId::parse("").is_err());
        assert!(serde_json::from_str::<JobId>("\"a>b\"").is_err());
    }
}
