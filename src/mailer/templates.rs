//! Mail templates: handlebars files `<templates_dir>/<language>/<kind>.<part>.hbs`,
//! where part is `subject`, `html` or `text`. HTML parts escape every value; text parts
//! and subjects do not (a subject's line breaks are removed, so no header can be
//! injected through it).

use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;

/// The notifications the mailer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Completed,
    Failed,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Completed => "completed",
            Kind::Failed => "failed",
        }
    }
}

/// A rendered mail.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("mail template {file}: {message}")]
    Load { file: PathBuf, message: String },
    #[error("rendering mail template {name}: {message}")]
    Render { name: String, message: String },
}

pub struct Templates {
    html: Handlebars<'static>,
    plain: Handlebars<'static>,
}

impl Templates {
    /// Loads and parses all six templates; a missing or broken one names its file and line.
    pub fn load(dir: &Path, language: &str) -> Result<Self, TemplateError> {
        let mut html = Handlebars::new();
        let mut plain = Handlebars::new();
        plain.register_escape_fn(handlebars::no_escape);
        for kind in [Kind::Completed, Kind::Failed] {
            for part in ["subject", "html", "text"] {
                let file = dir.join(language).join(format!("{}.{part}.hbs", kind.name()));
                let registry = if part == "html" { &mut html } else { &mut plain };
                registry
                    .register_template_file(&template_name(kind, part), &file)
                    .map_err(|e| TemplateError::Load { file: file.clone(), message: e.to_string() })?;
            }
        }
        Ok(Self { html, plain })
    }

    pub fn render(&self, kind: Kind, data: &impl Serialize) -> Result<Rendered, TemplateError> {
        let render = |registry: &Handlebars<'static>, part: &str| {
            let name = template_name(kind, part);
            registry.render(&name, data).map_err(|e| TemplateError::Render { name, message: e.to_string() })
        };
        let subject = render(&self.plain, "subject")?;
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            html: render(&self.html, "html")?,
            text: render(&self.plain, "text")?,
        })
    }
}

fn template_name(kind: Kind, part: &str) -> String {
    format!("{}.{part}", kind.name())
}
